"""Does reusing the face detector's boxes for 40 ms pay?: see README.md beside this file."""
