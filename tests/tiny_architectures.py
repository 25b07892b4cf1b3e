"""Small specs of every 1-Lipschitz family (8x8 inputs, 10 classes), shared by the training and the GPU tests."""

TINY_ONE_LIPSCHITZ = {
    "LipConv-10": {"family": "lipconvnet", "input_shape": [3, 8, 8], "classes": 10,
                   "options": {"depth": 2, "blocks": 2, "init_channels": 4}},
    "CPL-S": {"family": "cpl", "input_shape": [3, 8, 8], "classes": 10,
              "options": {"depth": 2, "depth_linear": 1, "num_channels": 6, "n_features": 16, "conv_size": 4, "pool": 2}},
    "SLL-S": {"family": "sll", "input_shape": [3, 8, 8], "classes": 10,
              "options": {"depth": 2, "num_channels": 12, "depth_linear": 1, "n_features": 16, "pool": 2}},
    "Sandwich-S": {"family": "sandwich", "input_shape": [3, 8, 8], "classes": 10,
                   "options": {"conv_channels": [4], "dense_features": [16]}},
}
