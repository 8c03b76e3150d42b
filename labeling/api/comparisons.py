"""The API of blind comparisons: a labeler's vote on a comparison lease. The lease itself is
claimed and read with the generic endpoints (`tasks/next/` with kind "comparison",
`assignments/<id>/`), which never name a model; the vote's answer does, once it is cast."""
from rest_framework import serializers, status
from rest_framework.response import Response

from labeling.api.views import endpoint, parse
from labeling.models import Vote
from labeling.services import comparisons


class VoteIn(serializers.Serializer):
    outcome = serializers.CharField()
    likert_a = serializers.IntegerField(required=False, allow_null=True, default=None)
    likert_b = serializers.IntegerField(required=False, allow_null=True, default=None)
    flags = serializers.JSONField(required=False, default=dict)
    comment = serializers.CharField(required=False, default="", allow_blank=True,
                                    trim_whitespace=False)
    time_spent_ms = serializers.IntegerField(required=False, default=0, min_value=0)


class VoteSerializer(serializers.ModelSerializer):
    """The stored vote and, now that it is in, which version wrote each side."""

    revealed = serializers.SerializerMethodField()

    class Meta:
        model = Vote
        fields = ["id", "task", "assignment", "outcome", "likert_a", "likert_b", "flags",
                  "comment", "time_spent_ms", "created_at", "revealed"]

    def get_revealed(self, obj):
        return {
            "a": {"version_id": obj.version_a_id, "name": obj.completion_a.model_label},
            "b": {"version_id": obj.version_b_id, "name": obj.completion_b.model_label},
        }


@endpoint(["POST"])
def vote_submit(request, assignment_id):
    data = parse(VoteIn, request.data)
    vote = comparisons.vote_submit(assignment_id=assignment_id, labeler=request.user, **data)
    return Response(VoteSerializer(vote).data, status=status.HTTP_201_CREATED)
