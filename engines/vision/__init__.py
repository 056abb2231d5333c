"""Image classification engines: networks, the model store for them, pre/post-processing, and the
TensorRT, ONNX Runtime and PyTorch backends behind one `VisionEngine` protocol. Ray-free."""
