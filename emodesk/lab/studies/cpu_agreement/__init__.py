"""Does a quantised member score alike on another CPU?: see README.md beside this file."""
