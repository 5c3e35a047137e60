-- 004: registered elevation grids (model version 2's terrain).
--
-- A terrain is registered once, from SRTM tiles merged into one grid, and read by every job on
-- any machine: the grid itself is stored here, with what identifies it. heights: the grid's
-- float32 values, little-endian, row 0 the northernmost (rows x cols); sha256: of its
-- placement, spacing and heights (kernel/terrain.py ElevationGrid.sha256), checked on read.
CREATE TABLE heimdall.terrains (
    name        text        PRIMARY KEY CHECK (char_length(name) BETWEEN 1 AND 100),
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    north       float8      NOT NULL,
    west        float8      NOT NULL,
    dlat        float8      NOT NULL CHECK (dlat > 0),
    dlon        float8      NOT NULL CHECK (dlon > 0),
    rows        integer     NOT NULL CHECK (rows >= 2),
    cols        integer     NOT NULL CHECK (cols >= 2),
    heights     bytea       NOT NULL CHECK (octet_length(heights) = 4 * rows * cols),
    sources     jsonb       NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Elevation data does not compress well and is read whole: no compression attempt.
ALTER TABLE heimdall.terrains ALTER COLUMN heights SET STORAGE EXTERNAL;
