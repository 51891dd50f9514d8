"""voxloop's streaming side: transports, codecs, pacing. Never decides what to say."""
