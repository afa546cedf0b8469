"""Sources of video frames and audio chunks: camera, microphone, files, fakes."""
