"""Device-side evaluation for the reference: the float64 pass of `correctly_rounded` run with
torch on the tensor's own device (reference_device.py). Its own layer: it imports torch and
normtheory.reference, which the reference itself may never do, and nothing imports it but the
layers above (certify, testing) — or a user — that want CUDA inputs evaluated on their GPU.
Importing `normtheory.accel.reference_device` registers it with normtheory.reference.tensors."""
