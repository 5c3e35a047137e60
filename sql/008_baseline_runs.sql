-- 008: the baseline localizer's runs (docs/TRAINING.md): what `heimdall-synth baseline` measured
-- on a dataset, kept with it so that datasets, or one dataset before and after a model change,
-- are compared on the same footing. A run is written once, in one INSERT, and removed with its
-- dataset.
CREATE TABLE heimdall.baseline_runs (
    id                    uuid        PRIMARY KEY,
    dataset_id            uuid        NOT NULL
                          REFERENCES heimdall.synthetic_datasets (id) ON DELETE CASCADE,
    created_at            timestamptz NOT NULL DEFAULT now(),
    method                text        NOT NULL,           -- the model and its settings, in words
    params                jsonb       NOT NULL,           -- the same, as the fit took them
    seed                  bigint      NOT NULL CHECK (seed >= 0),
    model_version         int         NOT NULL,           -- of the code that ran it
    dataset_samples       bigint      NOT NULL CHECK (dataset_samples >= 0),
    train_samples         bigint      NOT NULL CHECK (train_samples > 0),
    test_samples          bigint      NOT NULL CHECK (test_samples > 0),
    median_error_m        float8      NOT NULL,
    p90_error_m           float8      NOT NULL,
    centre_median_error_m float8      NOT NULL,           -- predicting the train split's mean
    centre_p90_error_m    float8      NOT NULL,
    median_crb_m          float8,                         -- of the test samples (finite ones)
    median_gdop           float8,
    train_seconds         float8      NOT NULL CHECK (train_seconds >= 0),
    total_seconds         float8      NOT NULL CHECK (total_seconds >= 0),
    -- every test sample's error, in sample_index order: the plots are drawn from these
    test_sample_index     int8[]      NOT NULL,
    test_error_m          float4[]    NOT NULL,
    CHECK (cardinality(test_sample_index) = test_samples),
    CHECK (cardinality(test_error_m) = test_samples)
);

CREATE INDEX baseline_runs_dataset_created_idx
    ON heimdall.baseline_runs (dataset_id, created_at);
