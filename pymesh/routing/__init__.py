"""pymesh.routing"""
