"""Live pipeline (Qt-free except app.ui): sources, detection, rectified crops, backends, recorder, benchmark, doctor."""
