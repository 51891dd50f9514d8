"""Wire protocols as pure codecs: wire messages -> session inputs, session outputs -> wire messages.

``voxloop`` is voxloop's own WebSocket protocol v1 (docs/protocol.md); ``twilio`` is Twilio Media
Streams' messages and ``phone`` the provider-neutral call codec over them (docs/telephony.md). A codec
does no I/O: streaming/connection.py runs it over a socket.
"""
