"""Images and patch data: image files, the embedded sample photos, aligned HR/LR patch pairs
and their Parquet shards."""
