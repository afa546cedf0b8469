"""The face and speech paths on CUDA (an H100, once): see README.md beside this file."""
