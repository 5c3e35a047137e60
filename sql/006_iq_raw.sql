-- 006: iq_raw datasets (docs/SIGNALS.md).
--
-- The features measured from each receiver's IQ are per-receiver arrays of measurement_features,
-- one column per feature and aggregate over the measurement windows (iq_<feature>_<mean|std|
-- min|max>, NULL on feature_based rows): written by the same binary COPY as the rest of the row.
ALTER TABLE heimdall.measurement_features
    ADD COLUMN IF NOT EXISTS iq_rssi_dbm_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_rssi_dbm_std float4[],
    ADD COLUMN IF NOT EXISTS iq_rssi_dbm_min float4[],
    ADD COLUMN IF NOT EXISTS iq_rssi_dbm_max float4[],
    ADD COLUMN IF NOT EXISTS iq_snr_db_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_snr_db_std float4[],
    ADD COLUMN IF NOT EXISTS iq_snr_db_min float4[],
    ADD COLUMN IF NOT EXISTS iq_snr_db_max float4[],
    ADD COLUMN IF NOT EXISTS iq_noise_floor_dbm_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_noise_floor_dbm_std float4[],
    ADD COLUMN IF NOT EXISTS iq_noise_floor_dbm_min float4[],
    ADD COLUMN IF NOT EXISTS iq_noise_floor_dbm_max float4[],
    ADD COLUMN IF NOT EXISTS iq_freq_offset_hz_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_freq_offset_hz_std float4[],
    ADD COLUMN IF NOT EXISTS iq_freq_offset_hz_min float4[],
    ADD COLUMN IF NOT EXISTS iq_freq_offset_hz_max float4[],
    ADD COLUMN IF NOT EXISTS iq_occupied_bw_hz_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_occupied_bw_hz_std float4[],
    ADD COLUMN IF NOT EXISTS iq_occupied_bw_hz_min float4[],
    ADD COLUMN IF NOT EXISTS iq_occupied_bw_hz_max float4[],
    ADD COLUMN IF NOT EXISTS iq_psd_dbm_per_hz_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_psd_dbm_per_hz_std float4[],
    ADD COLUMN IF NOT EXISTS iq_psd_dbm_per_hz_min float4[],
    ADD COLUMN IF NOT EXISTS iq_psd_dbm_per_hz_max float4[],
    ADD COLUMN IF NOT EXISTS iq_spectral_centroid_hz_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_spectral_centroid_hz_std float4[],
    ADD COLUMN IF NOT EXISTS iq_spectral_centroid_hz_min float4[],
    ADD COLUMN IF NOT EXISTS iq_spectral_centroid_hz_max float4[],
    ADD COLUMN IF NOT EXISTS iq_rolloff_hz_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_rolloff_hz_std float4[],
    ADD COLUMN IF NOT EXISTS iq_rolloff_hz_min float4[],
    ADD COLUMN IF NOT EXISTS iq_rolloff_hz_max float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_mean_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_mean_std float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_mean_min float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_mean_max float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_std_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_std_std float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_std_min float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_std_max float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_max_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_max_std float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_max_min float4[],
    ADD COLUMN IF NOT EXISTS iq_envelope_max_max float4[],
    ADD COLUMN IF NOT EXISTS iq_papr_db_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_papr_db_std float4[],
    ADD COLUMN IF NOT EXISTS iq_papr_db_min float4[],
    ADD COLUMN IF NOT EXISTS iq_papr_db_max float4[],
    ADD COLUMN IF NOT EXISTS iq_zero_crossing_rate_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_zero_crossing_rate_std float4[],
    ADD COLUMN IF NOT EXISTS iq_zero_crossing_rate_min float4[],
    ADD COLUMN IF NOT EXISTS iq_zero_crossing_rate_max float4[],
    ADD COLUMN IF NOT EXISTS iq_delay_spread_us_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_delay_spread_us_std float4[],
    ADD COLUMN IF NOT EXISTS iq_delay_spread_us_min float4[],
    ADD COLUMN IF NOT EXISTS iq_delay_spread_us_max float4[],
    ADD COLUMN IF NOT EXISTS iq_coherence_bw_hz_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_coherence_bw_hz_std float4[],
    ADD COLUMN IF NOT EXISTS iq_coherence_bw_hz_min float4[],
    ADD COLUMN IF NOT EXISTS iq_coherence_bw_hz_max float4[],
    ADD COLUMN IF NOT EXISTS iq_confidence_mean float4[],
    ADD COLUMN IF NOT EXISTS iq_confidence_std float4[],
    ADD COLUMN IF NOT EXISTS iq_confidence_min float4[],
    ADD COLUMN IF NOT EXISTS iq_confidence_max float4[];

-- With iq_storage 'postgres', each receiver's capture of a sample: written by binary COPY in the
-- transaction of the sample's row, and removed only with it (cascade from the dataset's
-- deletion through the sample). receiver is the position in the sample's receiver arrays.
CREATE TABLE heimdall.iq_captures (
    dataset_id   uuid     NOT NULL,
    sample_index bigint   NOT NULL,
    receiver     int2     NOT NULL CHECK (receiver >= 0),
    format       text     NOT NULL CHECK (format IN ('ci16', 'cf32')),
    scale        float8   NOT NULL,                   -- sqrt(mW) per count (1 for cf32)
    iq           bytea    NOT NULL,                   -- interleaved I, Q, little-endian
    PRIMARY KEY (dataset_id, sample_index, receiver),
    FOREIGN KEY (dataset_id, sample_index)
        REFERENCES heimdall.measurement_features (dataset_id, sample_index) ON DELETE CASCADE
);

-- Random IQ does not compress: storing it uncompressed, out of line, saves the attempt.
ALTER TABLE heimdall.iq_captures ALTER COLUMN iq SET STORAGE EXTERNAL;

-- Append-only, as the samples are (contract C2): only the cascade of a dataset's deletion
-- (trigger depth > 1) removes captures.
CREATE FUNCTION heimdall.refuse_capture_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'heimdall.iq_captures is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'IQ captures are removed only by deleting their dataset.';
END
$$;

CREATE TRIGGER iq_captures_append_only
    BEFORE UPDATE OR DELETE ON heimdall.iq_captures
    FOR EACH STATEMENT EXECUTE FUNCTION heimdall.refuse_capture_change();
