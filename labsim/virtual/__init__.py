"""Virtual time: a clock of labsim's own and an in-memory lab, so a week runs in seconds."""
