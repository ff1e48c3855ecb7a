"""Virtual time: a clock of labsim's own and an in-memory lab, so a week runs in seconds."""

# How many files the in-memory HTTP and TFTP services keep read (with their answers).
# On sockets the services keep 10,000 (services.http.CACHE_FILES_MAX, TFTP's
# CACHE_NAMES_MAX): a storm reads a phone's own file once or twice, and a 100,000-phone
# storm would keep ~1 KB a phone for nothing. A run in memory reads every phone's file
# again on every pass, for days: at 10,000 phones (10,001 files) a cache of 10,000 was
# emptied and refilled on every pass, reading each file from disk again (40,004 reads in
# 4 simulated hours instead of 10,001; ~6 % of that run's CPU). Sized like the lab's
# other per-URL tables.
FILES_CACHED = 1 << 17
