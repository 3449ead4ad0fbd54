//! Ids outside the container range: layers, COPY --chown, USER, -u (issue item 1).
