"""docs/TRAINING.md's Hugging Face example runs as written: its ```sh exports and its ```python
block, in a temporary folder, against a dataset named demo."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helpers import ROOT, generate

DOC = ROOT / "docs" / "TRAINING.md"


def test_the_hugging_face_example_runs(conn, db_url, tmp_path):
    dataset_id, _ = generate(conn, db_url, "demo", 600, seed=12, split_cell_m=2000.0)
    text = DOC.read_text()
    section = text[text.index("## Hugging Face datasets"):]
    sh = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = {"DATABASE_URL": db_url, "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
           "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_OFFLINE": "1"}
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    for line in sh.strip().splitlines():
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (line, done.stderr)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sizes = eval(done.stdout.split("} ")[0] + "}")  # the example's printed split sizes
    with conn.transaction():
        counts = dict(conn.execute(
            "SELECT split, count(*) FROM heimdall.measurement_features WHERE dataset_id = %s "
            "GROUP BY split", (dataset_id,)).fetchall())
    assert sizes == {"train": counts.get(0, 0), "validation": counts.get(1, 0),
                     "test": counts.get(2, 0)}
    assert sum(sizes.values()) == 600 and min(sizes.values()) > 0
