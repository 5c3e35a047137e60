"""Datasets record their model version and their terrain's hash; an expansion by code of
another model version, or on a terrain that is missing or differs, is refused naming it."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from heimdall_synth.kernel.defaults import MODEL_VERSION
from heimdall_synth.kernel.terrain import ElevationGrid
from heimdall_synth.service.engine.request import ConflictError
from heimdall_synth.service.storage.terrains import add_terrain, delete_terrain
from tests.helpers import submit


def plateau(height: float) -> ElevationGrid:
    """A 0.02-degree grid covering the default stations and their transmitters."""
    return ElevationGrid.from_array(np.full((126, 176), height), 46.5, 6.0, 0.02, 0.02)


def stored(conn, dataset_id):
    with conn.transaction():
        return conn.execute("SELECT model_version, terrain_sha256 FROM "
                            "heimdall.synthetic_datasets WHERE id = %s", (dataset_id,)).fetchone()


def test_a_new_dataset_records_this_model_version_and_its_terrains_hash(conn):
    grid = add_terrain(conn, "plateau", plateau(200.0))
    made = submit(conn, name="flat", num_samples=5)
    on_terrain = submit(conn, name="hills", num_samples=5, terrain="plateau")
    assert stored(conn, made["dataset_id"]) == (MODEL_VERSION, None)
    assert stored(conn, on_terrain["dataset_id"]) == (MODEL_VERSION, grid["sha256"])


def test_an_expansion_of_another_model_version_is_refused_unless_overridden(conn):
    made = submit(conn, name="old", num_samples=5)
    with conn.transaction():  # as a dataset made by model version 1 reads after migration 005
        conn.execute("UPDATE heimdall.synthetic_datasets SET model_version = 1 WHERE id = %s",
                     (made["dataset_id"],))
    with pytest.raises(ConflictError) as refused:
        submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5)
    assert refused.value.fields == ["model_version"] and "model version 1" in str(refused.value)
    job = submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5,
                 allow_parameter_override=True)
    assert job["overrides"]["model_version"] == {"dataset": 1, "job": MODEL_VERSION}


def test_an_expansion_on_a_missing_or_different_terrain_is_refused(conn):
    add_terrain(conn, "plateau", plateau(200.0))
    made = submit(conn, name="hills", num_samples=5, terrain="plateau")
    submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5)  # the same grid: fine
    delete_terrain(conn, "plateau")
    with pytest.raises(ConflictError) as missing:
        submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5,
               allow_parameter_override=True)
    assert missing.value.fields == ["terrain"] and missing.value.code == "terrain_missing"
    add_terrain(conn, "plateau", plateau(250.0))  # the same name, another grid
    with pytest.raises(ConflictError) as differs:
        submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5)
    assert differs.value.fields == ["terrain"] and "SHA-256" in str(differs.value)
    job = submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5,
                 allow_parameter_override=True)
    assert set(job["overrides"]) == {"terrain_sha256"}


def test_an_unregistered_terrain_is_refused_naming_the_field(conn):
    from heimdall_synth.kernel import ConfigError
    with pytest.raises(ConfigError) as refused:
        submit(conn, name="nowhere", num_samples=5, terrain="atlantis")
    assert refused.value.field == "terrain"


def test_over_http_an_expansion_of_another_model_version_is_a_409(server, api, db_url):
    created = api.post("/generate", {"name": "old", "num_samples": 3})
    assert created.status in (200, 201, 202), created
    dataset_id = created.json["dataset_id"]
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("UPDATE heimdall.synthetic_datasets SET model_version = 1 WHERE id = %s",
                  (dataset_id,))
    refused = api.post("/generate", {"expand_dataset_id": dataset_id, "num_samples": 3})
    assert refused.status == 409 and "model_version" in refused.json["message"] + str(
        refused.json.get("fields", refused.json.get("field")))
    assert api.get(f"/datasets/{dataset_id}").json["model_version"] == 1


def test_over_http_an_expansion_on_another_grid_of_the_terrains_name_is_a_409(server, api,
                                                                               db_url):
    with psycopg.connect(db_url) as conn:
        add_terrain(conn, "mesa", plateau(300.0))
    created = api.post("/generate", {"name": "on-mesa", "num_samples": 3, "terrain": "mesa"})
    assert created.status in (200, 201, 202), created
    dataset_id = created.json["dataset_id"]
    with psycopg.connect(db_url) as conn:
        delete_terrain(conn, "mesa")
        add_terrain(conn, "mesa", plateau(350.0))
    refused = api.post("/generate", {"expand_dataset_id": dataset_id, "num_samples": 3})
    assert refused.status == 409 and "SHA-256" in refused.json["message"]
    assert "terrain" in str(refused.json.get("fields", refused.json.get("field")))
    assert api.get(f"/datasets/{dataset_id}").json["terrain_sha256"] == plateau(300.0).sha256()
