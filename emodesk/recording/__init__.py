"""Recording labeled sessions (issue: "Record labeled sessions, and retrain from them").

Not built yet: this package is where the session writer, reader, checker and
repairer will live. Nothing imports it today.
"""
