"""Numba's cache checks only a function's own source file; the kernel drops its cached code
when any kernel source changed (kernel/jit.py), so a changed callee is never run stale."""

from heimdall_synth.kernel import jit


def test_cached_code_of_other_sources_is_dropped_and_of_the_same_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(jit, "cache_folder", lambda: tmp_path)
    compiled = [tmp_path / "attempt.evaluate_attempt-1.py311.nbi",
                tmp_path / "attempt.evaluate_attempt-1.py311.1.nbc"]
    for path in compiled:
        path.write_bytes(b"old")
    (tmp_path / jit.STAMP).write_text("a digest of other sources\n")
    jit.drop_stale_cache()
    assert not any(p.exists() for p in compiled)
    assert (tmp_path / jit.STAMP).read_text().strip() == jit.sources_digest()
    for path in compiled:
        path.write_bytes(b"new")
    jit.drop_stale_cache()
    assert all(p.exists() for p in compiled)


def test_the_digest_covers_every_kernel_source():
    names = {p.name for p in jit.KERNEL_DIR.glob("*.py")}
    assert {"attempt.py", "itu.py", "terrain.py", "shadowing.py", "jit.py"} <= names
    assert len(jit.sources_digest()) == 64
