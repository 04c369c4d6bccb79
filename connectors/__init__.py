"""Channel connectors: verify, parse into `InboundMessage`, hand to the inbox, send replies.

Connectors decide nothing; the engine never knows which transport a message came by.
"""
