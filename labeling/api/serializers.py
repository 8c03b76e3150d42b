"""JSON shapes of the labeling API. Inputs are checked for types here; the rules live in the
services (a serializer never repeats them)."""
from rest_framework import serializers

from labeling.evaluation_selectors import comparison_sides
from labeling.importers import format_for
from labeling.models import Assignment, Demonstration, ExportSnapshot, Project, Ranking, Skip
from labeling.parsing import DB_BIGINT_MAX, DB_INT_MAX, whole_number
from labeling.selectors import completions_for


class TextOnly:
    """Text only: DRF's CharField turns a JSON 5 or true into "5" or "True" and stores it."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Text(TextOnly, serializers.CharField):
    pass


class Slug(TextOnly, serializers.SlugField):
    pass


class Count(serializers.IntegerField):
    """A whole number a PostgreSQL integer column holds, written in ASCII digits (DRF's own
    IntegerField reads "١٢" as 12)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", DB_INT_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and whole_number(data, minimum=-DB_BIGINT_MAX) is None:
            self.fail("invalid")
        return super().to_internal_value(data)


class RowId(Count):
    """A primary key."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", DB_BIGINT_MAX)
        super().__init__(**kwargs)


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "slug", "name", "guidelines", "k", "overlap", "lease_seconds"]


class AssignmentSerializer(serializers.ModelSerializer):
    """A lease as a labeler (or a labeling tool) sees it: the model behind each completion is
    hidden and the completions are in the assignment's own shuffled order (a comparison's two
    replies: side a, the left one, then side b)."""

    project = serializers.CharField(source="prompt.project.slug")
    guidelines = serializers.CharField(source="prompt.project.guidelines")
    prompt = serializers.SerializerMethodField()
    completions = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "kind", "status", "task", "comparison", "created_at", "expires_at",
                  "project", "guidelines", "prompt", "completions"]

    def get_prompt(self, obj):
        return {"id": obj.prompt_id, "turns": obj.prompt.turns}

    def get_completions(self, obj):
        if obj.kind == Assignment.Kind.COMPARISON:
            sides = zip("ab", comparison_sides(assignment=obj), strict=True)
            return [{"side": side, "id": c.pk, "text": c.text} for side, c in sides]
        return [{"id": c.pk, "text": c.text} for c in completions_for(assignment=obj)]


class RankingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ranking
        fields = ["id", "task", "assignment", "order", "all_bad", "flags", "comment",
                  "time_spent_ms", "created_at"]


class DemonstrationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Demonstration
        fields = ["id", "prompt", "turns", "is_dialogue", "suggestion", "time_spent_ms",
                  "client_token", "created_at"]


class SkipSerializer(serializers.ModelSerializer):
    class Meta:
        model = Skip
        fields = ["id", "kind", "task", "prompt", "reason", "created_at"]


class SnapshotSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")

    class Meta:
        model = ExportSnapshot
        fields = ["snapshot_id", "project", "as_of", "counts", "digests", "created_at"]


class NextTaskIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Assignment.Kind.choices, default="ranking")
    project = Slug(required=False)


class RankingIn(serializers.Serializer):
    order = serializers.JSONField()
    all_bad = serializers.BooleanField(default=False)
    flags = serializers.JSONField(required=False, default=dict)
    comment = Text(required=False, default="", allow_blank=True, trim_whitespace=False)
    time_spent_ms = Count(required=False, default=0)


class DemonstrationIn(serializers.Serializer):
    reply = Text(allow_blank=True, trim_whitespace=False)
    client_token = Text(allow_blank=True)
    time_spent_ms = Count(required=False, default=0)


class DialogueIn(serializers.Serializer):
    project = Slug()
    turns = serializers.JSONField()
    client_token = Text(allow_blank=True)
    suggestion_id = RowId(required=False, allow_null=True, default=None)
    time_spent_ms = Count(required=False, default=0)


class SkipIn(serializers.Serializer):
    reason = Text(allow_blank=True)


class ImportIn(serializers.Serializer):
    format = serializers.ChoiceField(choices=["jsonl", "csv"], required=False)
    content = Text(required=False, trim_whitespace=False)
    file = serializers.FileField(required=False)
    demonstrations_needed = Count(required=False, default=1, max_value=20)
    evaluation_share = serializers.FloatField(required=False, default=0.0)

    def validate(self, attrs):
        if ("content" in attrs) == ("file" in attrs):
            raise serializers.ValidationError("Send either a file or a content field.")
        if "format" not in attrs:
            attrs["format"] = format_for(getattr(attrs.get("file"), "name", "") or "")
        return attrs


class CompletionIn(serializers.Serializer):
    text = Text(allow_blank=True, trim_whitespace=False)
    model_label = Text(required=False, default="", allow_blank=True)
    model_version_id = Count(required=False, allow_null=True, default=None)
    sampling = serializers.DictField(required=False, default=dict)


class TaskIn(serializers.Serializer):
    prompt_id = RowId()
    completions = CompletionIn(many=True)


class RankingTasksIn(serializers.Serializer):
    batch_key = Text(max_length=100)
    priority = Count(required=False, default=0, min_value=-DB_INT_MAX - 1)
    tasks = TaskIn(many=True, allow_empty=False)
