from django.contrib import admin

from chat.models import ChatComparison, ChatSettings, Conversation, Message


@admin.register(ChatSettings)
class ChatSettingsAdmin(admin.ModelAdmin):
    list_display = ("project", "temperature", "top_p", "max_new_tokens")
    filter_horizontal = ("model_versions",)


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("role", "parent", "content", "generation", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "labeler", "model_version", "project", "updated_at")
    list_filter = ("project", "model_version")
    search_fields = ("title", "labeler__username")
    readonly_fields = ("project", "labeler", "model_version", "current", "created_at",
                       "updated_at")  # fmt: skip
    inlines = [MessageInline]


@admin.register(ChatComparison)
class ChatComparisonAdmin(admin.ModelAdmin):
    list_display = ("message", "status", "ranking_task", "requested_by", "created_at")
    list_filter = ("status",)
    readonly_fields = ("message", "requested_by", "alternatives", "status", "ranking_task",
                       "error", "created_at")  # fmt: skip
