"""zwz.server.api"""
