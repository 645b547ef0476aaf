/* model-info.c: what the translator needs to know about a Claude model.
 *
 * Two sources. The static family table below (TRANSLATION.md 2.6) knows the things the API does
 * not publish: whether non-default sampling values are refused, whether prefill is refused,
 * whether thinking is on by default. GET /v1/models items publish the rest (max_tokens and the
 * capabilities object: thinking types, effort levels, structured outputs), and
 * model_info_merge_json() lets them override the table, field by field, where they say something.
 *
 * Model ids are matched by family prefix after "claude-", so dated snapshots
 * ("claude-sonnet-4-5-20250929"), Vertex ids ("claude-haiku-4-5@20251001") and Bedrock ids
 * ("us.anthropic.claude-opus-4-1-20250805-v1:0") all find their family. The table is ordered so
 * that a longer prefix is tried before a shorter one it extends ("claude-opus-4-5" before
 * "claude-opus-4"). Nothing here allocates. */
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "translate.h"

enum {
    F_ADAPTIVE = 1 << 0,
    F_ENABLED = 1 << 1,
    F_DEFAULT_ON = 1 << 2,
    F_CAN_DISABLE = 1 << 3,
    F_STRUCTURED = 1 << 4,
    F_REJECTS_SAMPLING = 1 << 5,
    F_SAMPLING_EXCLUSIVE = 1 << 6,
    F_EFFORT = 1 << 7,
    F_XHIGH = 1 << 8,
    F_MAX = 1 << 9,
    F_NO_PREFILL = 1 << 10,
};

struct model_family {
    const char *prefix; /* after "claude-" */
    int64_t max_output_tokens;
    unsigned flags;
};

/* The 5 family and Opus 4.7+ refuse non-default sampling values and prefill; 4.6 refuses prefill;
 * the 4.5 family takes temperature or top_p but not both. Sonnet 5's prefill rule is not stated
 * in the sources (TRANSLATION.md 2.6); pitfall 3 puts the whole 5 family among the refusers. */
static const struct model_family families[] = {
    {"mythos-preview", 128000,
     F_ADAPTIVE | F_ENABLED | F_DEFAULT_ON | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT | F_MAX |
         F_NO_PREFILL},
    {"mythos-5", 128000,
     F_ADAPTIVE | F_DEFAULT_ON | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT | F_MAX |
         F_NO_PREFILL},
    {"fable-5", 128000,
     F_ADAPTIVE | F_DEFAULT_ON | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT | F_MAX |
         F_NO_PREFILL},
    {"opus-5", 128000,
     F_ADAPTIVE | F_DEFAULT_ON | F_CAN_DISABLE | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT |
         F_XHIGH | F_MAX | F_NO_PREFILL},
    {"sonnet-5", 128000,
     F_ADAPTIVE | F_DEFAULT_ON | F_CAN_DISABLE | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT |
         F_MAX | F_NO_PREFILL},
    {"opus-4-8", 128000,
     F_ADAPTIVE | F_CAN_DISABLE | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT | F_XHIGH | F_MAX |
         F_NO_PREFILL},
    {"opus-4-7", 128000,
     F_ADAPTIVE | F_CAN_DISABLE | F_STRUCTURED | F_REJECTS_SAMPLING | F_EFFORT | F_XHIGH | F_MAX |
         F_NO_PREFILL},
    {"opus-4-6", 128000,
     F_ADAPTIVE | F_ENABLED | F_CAN_DISABLE | F_STRUCTURED | F_EFFORT | F_MAX | F_NO_PREFILL},
    {"sonnet-4-6", 128000,
     F_ADAPTIVE | F_ENABLED | F_CAN_DISABLE | F_STRUCTURED | F_EFFORT | F_MAX | F_NO_PREFILL},
    {"opus-4-5", 64000, F_ENABLED | F_CAN_DISABLE | F_STRUCTURED | F_SAMPLING_EXCLUSIVE | F_EFFORT},
    {"sonnet-4-5", 64000, F_ENABLED | F_CAN_DISABLE | F_STRUCTURED | F_SAMPLING_EXCLUSIVE},
    {"haiku-4-5", 64000, F_ENABLED | F_CAN_DISABLE | F_STRUCTURED | F_SAMPLING_EXCLUSIVE},
    {"opus-4-1", 32000, F_ENABLED | F_CAN_DISABLE | F_STRUCTURED | F_SAMPLING_EXCLUSIVE},
    {"opus-4", 32000, F_ENABLED | F_CAN_DISABLE},
    {"sonnet-4", 64000, F_ENABLED | F_CAN_DISABLE},
    {"3-7-sonnet", 64000, F_ENABLED | F_CAN_DISABLE},
    {"3-5-haiku", 8192, F_CAN_DISABLE},
    {"3-5-sonnet", 8192, F_CAN_DISABLE},
    {"3-haiku", 4096, F_CAN_DISABLE},
};

static const struct model_family *family_find(const char *id)
{
    const char *p = strstr(id, "claude-");

    if (!p)
        return NULL;
    p += strlen("claude-");
    for (size_t i = 0; i < ELEMENTSOF(families); i++) {
        size_t n = strlen(families[i].prefix);

        /* "opus-5" must not match a hypothetical "opus-50". */
        if (strncmp(p, families[i].prefix, n) == 0 && !(p[n] >= '0' && p[n] <= '9'))
            return &families[i];
    }
    return NULL;
}

void model_info_from_table(const char *id, struct model_info *ret)
{
    const struct model_family *f;
    unsigned fl;

    *ret = (struct model_info){};
    if (!id)
        return;
    snprintf(ret->id, sizeof ret->id, "%s", id);
    f = family_find(id);
    if (!f)
        return;
    fl = f->flags;
    ret->max_output_tokens = f->max_output_tokens;
    ret->thinking_adaptive = fl & F_ADAPTIVE;
    ret->thinking_enabled = fl & F_ENABLED;
    ret->thinking_default_on = fl & F_DEFAULT_ON;
    ret->thinking_can_disable = fl & F_CAN_DISABLE;
    ret->structured_outputs = fl & F_STRUCTURED;
    ret->rejects_sampling = fl & F_REJECTS_SAMPLING;
    ret->sampling_exclusive = fl & F_SAMPLING_EXCLUSIVE;
    ret->effort = fl & F_EFFORT;
    ret->effort_xhigh = fl & F_XHIGH;
    ret->effort_max = fl & F_MAX;
    ret->prefill_rejected = fl & F_NO_PREFILL;
}

/* Reads {"supported": bool} at o[key] (borrowed). Leaves *v alone when the item says nothing. */
static void supported_get(const json_t *o, const char *key, bool *v)
{
    json_t *s = json_object_get(json_object_get(o, key), "supported");

    if (json_is_boolean(s))
        *v = json_is_true(s);
}

void model_info_merge_json(struct model_info *info, const json_t *item)
{
    json_t *caps, *v, *thinking, *types, *effort;

    if (!json_is_object(item))
        return;
    v = json_object_get(item, "id");
    if (info->id[0] == '\0' && json_is_string(v))
        snprintf(info->id, sizeof info->id, "%s", json_string_value(v));
    v = json_object_get(item, "max_tokens");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        info->max_output_tokens = json_integer_value(v);

    caps = json_object_get(item, "capabilities");
    if (!json_is_object(caps))
        return;

    thinking = json_object_get(caps, "thinking");
    types = json_object_get(thinking, "types");
    if (json_is_false(json_object_get(thinking, "supported"))) {
        info->thinking_adaptive = info->thinking_enabled = false;
        info->thinking_default_on = false;
    }
    supported_get(types, "adaptive", &info->thinking_adaptive);
    supported_get(types, "enabled", &info->thinking_enabled);
    supported_get(types, "disabled", &info->thinking_can_disable);

    supported_get(caps, "structured_outputs", &info->structured_outputs);

    effort = json_object_get(caps, "effort");
    v = json_object_get(effort, "supported");
    if (json_is_boolean(v))
        info->effort = json_is_true(v);
    supported_get(effort, "xhigh", &info->effort_xhigh);
    supported_get(effort, "max", &info->effort_max);
    if (!info->effort)
        info->effort_xhigh = info->effort_max = false;
}
