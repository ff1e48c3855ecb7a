"""The socket layer servers (``services/``) and phone clients (``transport/``) share.

Binding UDP sockets with the options Twisted's ``listenUDP`` cannot set, and sending on a
TCP connection at once. Imports Twisted and the standard library only, never labsim's
services or transport.
"""
