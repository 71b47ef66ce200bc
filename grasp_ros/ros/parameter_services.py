"""rclpy's parameter services with a bound on what one request may ask.

rclpy sets a SetParameters request's parameters one at a time, each through the node's checks
and its apply callback, on the executor's thread: one request of 20,000 entries (1 MB) held the
controller's executor 29 s (an adversarial audit; the watchdog stopped the robot, as it must,
but no cycle planned and no other service answered). A request naming more than
``MAX_REQUEST_ENTRIES`` parameters is refused whole, each entry with the reason; a get,
describe or type query of more names is answered empty, as rclpy answers one naming an
unknown parameter.
"""
from __future__ import annotations

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter_service import ParameterService

MAX_REQUEST_ENTRIES = 256
"""Most parameters one request may name: the controller has about 70 (a parameter file's
worth, as ``ros2 param load`` sends it, fits)."""


def _too_many(entries) -> str:
    if len(entries) <= MAX_REQUEST_ENTRIES:
        return ""
    return (f"a request of {len(entries)} parameters: more than the {MAX_REQUEST_ENTRIES} one "
            "request may name (the controller has about 70); send fewer at a time")


class BoundedParameterService(ParameterService):
    """``ParameterService`` refusing requests of more than ``MAX_REQUEST_ENTRIES`` entries."""

    def _set_parameters_callback(self, request, response):
        if reason := _too_many(request.parameters):
            response.results = [SetParametersResult(successful=False, reason=reason)
                                for _ in request.parameters]
            return response
        return super()._set_parameters_callback(request, response)

    def _set_parameters_atomically_callback(self, request, response):
        if reason := _too_many(request.parameters):
            response.result = SetParametersResult(successful=False, reason=reason)
            return response
        return super()._set_parameters_atomically_callback(request, response)

    def _get_parameters_callback(self, request, response):
        return response if _too_many(request.names) else super()._get_parameters_callback(request, response)

    def _describe_parameters_callback(self, request, response):
        return (response if _too_many(request.names)
                else super()._describe_parameters_callback(request, response))

    def _get_parameter_types_callback(self, request, response):
        return (response if _too_many(request.names)
                else super()._get_parameter_types_callback(request, response))
