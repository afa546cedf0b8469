"""Would the previous utterance help the text member on MELD?: see README.md beside this file."""
