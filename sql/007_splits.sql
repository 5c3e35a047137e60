-- 007: train / validation / test splits by spatial cell (docs/TRAINING.md).
--
-- Every sample carries its split (0 train, 1 validation, 2 test), a pure function of its
-- transmitter's position and its dataset's split_cell_m, split_train and split_validation:
-- kernel/splits.py computes it for the rows a job writes (in their binary COPY), and
-- heimdall.split_of below is the same function in SQL, used here once for the rows written
-- before splits existed (their datasets take the default cell and fractions).
CREATE FUNCTION heimdall.split_of(lat float8, lon float8, cell_m float8, train float8,
                                  validation float8) RETURNS int2
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    p CONSTANT int8 := 2147483647;
    m CONSTANT float8 := 111320.0;
    r int8;
    c int8;
    h int8;
    u float8;
BEGIN
    r := floor(lat * m / cell_m)::int8;
    c := floor(lon * m * cos(radians((r::float8 + 0.5::float8) * cell_m / m)) / cell_m)::int8;
    h := (((r % p) + p) % p * 48271 + 1) % p;
    h := (h + ((c % p) + p) % p) % p;
    h := (h * 48271) % p;
    h := h # (h >> 15);
    h := (h * 69621) % p;
    h := h # (h >> 13);
    h := (h * 48271) % p;
    h := h # (h >> 16);
    u := h::float8 / p::float8;
    RETURN CASE WHEN u < train THEN 0 WHEN u < train + validation THEN 1 ELSE 2 END;
END
$$;

ALTER TABLE heimdall.measurement_features ADD COLUMN IF NOT EXISTS split int2;

-- The backfill is a schema change, not a job: the append-only trigger steps aside for it alone.
ALTER TABLE heimdall.measurement_features DISABLE TRIGGER measurement_features_append_only;
UPDATE heimdall.measurement_features f
   SET split = heimdall.split_of(
           f.tx_latitude, f.tx_longitude,
           coalesce((d.config ->> 'split_cell_m')::float8, 1000.0),
           coalesce((d.config ->> 'split_train')::float8, 0.8),
           coalesce((d.config ->> 'split_validation')::float8, 0.1))
  FROM heimdall.synthetic_datasets d
 WHERE d.id = f.dataset_id AND f.split IS NULL;
ALTER TABLE heimdall.measurement_features ENABLE TRIGGER measurement_features_append_only;

ALTER TABLE heimdall.measurement_features
    ALTER COLUMN split SET NOT NULL,
    ADD CONSTRAINT measurement_features_split_code CHECK (split BETWEEN 0 AND 2);
