//! The Boxfile language (Dockerfile syntax): lexer and parser into instructions with source
//! spans, ARG/ENV expansion, ignore files and diagnostics. Knows nothing about the kernel.
