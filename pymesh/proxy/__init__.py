"""pymesh.proxy"""
