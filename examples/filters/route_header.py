"""Tell the client which route and cluster answered it: a response header from the route chosen.

pluginConfig:
    route_header:   the header naming the route (default x-route; "" leaves it out)
    cluster_header: the header naming the cluster (default x-cluster; "" leaves it out)

The route's name is its `name` in the VirtualService (empty when it has none; "default" for a
service no VirtualService routes); the cluster is named as Istio names it, outbound|PORT|SUBSET|HOST.
"""

from __future__ import annotations

from pymesh.filters import HttpFilter


class RouteHeader(HttpFilter):
    def setup(self) -> None:
        self.route_header = str(self.config.get("route_header", "x-route"))
        self.cluster_header = str(self.config.get("cluster_header", "x-cluster"))

    def on_response_head(self, stream):
        if self.route_header:
            stream.response_headers.set(self.route_header, stream.route_name)
        if self.cluster_header:
            stream.response_headers.set(self.cluster_header, stream.cluster_name)
        return None
