"""Training (paper IV-A): the Ray-free `Trainer`, its step, losses, augmentation, checkpoints and
validation, and the Ray Train adapter."""
