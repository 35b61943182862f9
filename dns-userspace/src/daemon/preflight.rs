//! What `hotpool check` verifies beyond the config file (filled in below).
