"""The learned world model: geometry-grounded memory, a small UNet that completes and corrects
reprojected memory, joint RGB / depth / semantics outputs, and the ``LearnedWorldModel`` backend."""
