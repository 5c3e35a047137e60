-- 001: the heimdall schema: datasets, generation jobs and the sample rows.
--
-- Applied by service/storage/migrations.py inside one transaction, under an advisory lock, after
-- it has created the schema and the ledger (heimdall.schema_migrations). Never change the SQL of
-- a released migration: the ledger stores each file's checksum and refuses a changed file; add a
-- new NNN_*.sql instead. A file whose comments alone were reworded is accepted only once its
-- earlier checksum is listed in SUPERSEDED in migrations.py.

CREATE SCHEMA IF NOT EXISTS heimdall;

CREATE TABLE heimdall.synthetic_datasets (
    id                 uuid        PRIMARY KEY,           -- UUIDv7 (time-ordered)
    name               text        NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100),
    description        text,
    dataset_type       text,
    seed               bigint      NOT NULL CHECK (seed >= 0),
    config             jsonb       NOT NULL,              -- the full effective configuration
    num_samples        bigint      NOT NULL DEFAULT 0 CHECK (num_samples >= 0),
    next_attempt_index bigint      NOT NULL DEFAULT 0 CHECK (next_attempt_index >= 0),
    quality_metrics    jsonb       NOT NULL DEFAULT '{}',
    storage_size_bytes bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    created_by_job_id  uuid                               -- no FK: jobs reference datasets
);

CREATE TABLE heimdall.generation_jobs (
    id               uuid        PRIMARY KEY,
    dataset_id       uuid        REFERENCES heimdall.synthetic_datasets (id) ON DELETE CASCADE,
    kind             text        NOT NULL CHECK (kind IN ('create', 'expand')),
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'queued', 'running', 'completed', 'failed', 'cancelled',
                          'interrupted')),
    config           jsonb       NOT NULL DEFAULT '{}',
    requested        bigint      NOT NULL CHECK (requested >= 0),
    generated        bigint      NOT NULL DEFAULT 0 CHECK (generated >= 0),
    attempted        bigint      NOT NULL DEFAULT 0 CHECK (attempted >= 0),
    rejections       jsonb       NOT NULL DEFAULT '{}',
    stopped_reason   text,
    samples_offset   bigint,
    progress_message text,
    error            text,
    device           text,
    overrides        jsonb,
    heartbeat_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);

CREATE INDEX generation_jobs_dataset_created_idx
    ON heimdall.generation_jobs (dataset_id, created_at);

-- One row per valid sample, written only by binary COPY (service/storage/copy_rows.py: keep its
-- column list in step with this table). Per-receiver arrays are in receiver order, padding not
-- stored. No indexes beyond the primary key and the unique constraint: write speed matters.
CREATE TABLE heimdall.measurement_features (
    recording_session_id    uuid        PRIMARY KEY,      -- dataset id prefix + sample index
    dataset_id              uuid        NOT NULL
                            REFERENCES heimdall.synthetic_datasets (id) ON DELETE CASCADE,
    sample_index            bigint      NOT NULL,
    attempt_index           bigint      NOT NULL,
    job_id                  uuid,
    created_at              timestamptz NOT NULL DEFAULT now(),
    -- transmitter (the labels)
    tx_latitude             float8,
    tx_longitude            float8,
    tx_altitude_m           float4,
    tx_power_dbm            float4,                       -- effective power
    frequency_hz            float8,
    tx_known                bool        DEFAULT true,
    -- quality
    num_receivers_in_sample int2,
    num_receivers_detected  int2,
    mean_snr_db             float4,
    gdop                    float8,
    hdop                    float8,
    crb_m                   float8,
    overall_confidence      float4,
    -- per receiver
    rx_id                   int2[],
    rx_lat                  float8[],
    rx_lon                  float8[],
    rx_alt_m                float4[],
    distance_km             float4[],
    signal_present          bool[],
    rssi_dbm                float4[],
    snr_db                  float4[],
    rssi_std_db             float4[],
    rssi_min_dbm            float4[],
    rssi_max_dbm            float4[],
    noise_floor_dbm         float4[],
    psd_dbm_per_hz          float4[],
    freq_offset_hz          float4[],
    CONSTRAINT measurement_features_dataset_sample_key UNIQUE (dataset_id, sample_index)
);

-- Contract C2: sample rows are append-only. UPDATE is refused outright; DELETE only when it
-- comes from the ON DELETE CASCADE of a dataset deletion (the referential-integrity trigger runs
-- it, so the trigger depth is 2), never as a direct statement. Statement-level triggers, so the
-- COPY path and a dataset deletion pay once per statement, not once per row.
CREATE FUNCTION heimdall.refuse_sample_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN NULL;   -- cascade from DELETE FROM heimdall.synthetic_datasets
    END IF;
    RAISE EXCEPTION 'heimdall.measurement_features is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Sample rows are removed only by deleting their dataset.';
END
$$;

CREATE TRIGGER measurement_features_append_only
    BEFORE UPDATE OR DELETE ON heimdall.measurement_features
    FOR EACH STATEMENT EXECUTE FUNCTION heimdall.refuse_sample_change();

-- The older layout: per-receiver values as one JSON object per receiver, in receiver order.
CREATE VIEW heimdall.measurement_features_json AS
SELECT f.recording_session_id, f.dataset_id, f.sample_index, f.attempt_index, f.job_id,
       f.created_at, f.tx_latitude, f.tx_longitude, f.tx_altitude_m, f.tx_power_dbm,
       f.frequency_hz, f.tx_known, f.num_receivers_in_sample, f.num_receivers_detected,
       f.mean_snr_db, f.gdop, f.hdop, f.crb_m, f.overall_confidence,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'rx_id', r.rx_id, 'lat', r.lat, 'lon', r.lon, 'alt_m', r.alt_m,
                   'distance_km', r.distance_km, 'signal_present', r.signal_present,
                   'rssi_dbm', r.rssi_dbm, 'snr_db', r.snr_db, 'rssi_std_db', r.rssi_std_db,
                   'rssi_min_dbm', r.rssi_min_dbm, 'rssi_max_dbm', r.rssi_max_dbm,
                   'noise_floor_dbm', r.noise_floor_dbm, 'psd_dbm_per_hz', r.psd_dbm_per_hz,
                   'freq_offset_hz', r.freq_offset_hz) ORDER BY r.k), '[]'::jsonb)
          FROM unnest(f.rx_id, f.rx_lat, f.rx_lon, f.rx_alt_m, f.distance_km, f.signal_present,
                      f.rssi_dbm, f.snr_db, f.rssi_std_db, f.rssi_min_dbm, f.rssi_max_dbm,
                      f.noise_floor_dbm, f.psd_dbm_per_hz, f.freq_offset_hz)
               WITH ORDINALITY AS r(rx_id, lat, lon, alt_m, distance_km, signal_present,
                                    rssi_dbm, snr_db, rssi_std_db, rssi_min_dbm, rssi_max_dbm,
                                    noise_floor_dbm, psd_dbm_per_hz, freq_offset_hz, k)
       ) AS receiver_features
  FROM heimdall.measurement_features f;
