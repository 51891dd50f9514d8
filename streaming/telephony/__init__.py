"""Phone calls: a provider's media-stream WebSocket is one voxloop session (``call.py``).

Each provider is one serializer module (``twilio.py``): its wire messages to and from the small
set of call events below. Adding Telnyx, Plivo, Vonage or Exotel means writing that module (their
media streams differ in field names, the start handshake and the clear/mark messages) and naming its
path in ``PROVIDERS``; the call logic stays the same. See docs/telephony.md.
"""
