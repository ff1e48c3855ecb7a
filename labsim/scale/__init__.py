"""Scale-out: shards of one run, local worker processes, the merged report."""
