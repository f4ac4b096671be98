"""High-level vision on restored images, the paper's own claim (IV-C text recognition, Table II;
IV-D tiny-face detection, Table III): data builders, a recognizer and a detector with their
metrics, and the protocol that runs them on LR, bicubic, CAJNN and HR images."""
