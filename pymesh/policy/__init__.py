"""pymesh.policy"""
