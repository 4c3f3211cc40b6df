"""ringkv data plane: partitioned, Raft-replicated LevelDB storage node (import name ``kvnode``)."""

__version__ = "0.1.0"
