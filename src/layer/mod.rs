//! The layer codec: directory diff → tar(+gzip/zstd) with whiteouts, and safe extraction.
