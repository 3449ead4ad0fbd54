//! Image references (Docker's normalisation) and OCI manifest/config helpers.
