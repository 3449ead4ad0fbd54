//! BuildKit CVE-2024-23651 (cache-mount race) and CVE-2024-23652 (RUN --mount removing host paths).
