"""Voices: the speaker library (records under ``VOXLOOP_HOME/voices``), speaker embeddings, and
parametric adaptation of a voice to reference audio."""
