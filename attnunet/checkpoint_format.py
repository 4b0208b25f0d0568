"""What a checkpoint stores besides Lightning's own fields (shared by training and inference
without making inference import Lightning)."""

CHECKPOINT_KEY = "attnunet"  # checkpoint[CHECKPOINT_KEY]: model, labels, preprocessing, window
CHECKPOINT_FORMAT = 1  # raised when that dictionary changes incompatibly
