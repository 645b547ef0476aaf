/* json-arena.c: scoped bump allocation for jansson's values (see json-arena.h).
 *
 * A scope owns a list of blocks; the scope's own record sits at the start of its first block. An
 * allocation is the next 16-byte-aligned piece of the newest block, and counts one more live value
 * in the scope. free() looks the pointer up among the blocks of all scopes; a pointer in none of
 * them came from malloc() and goes back to it. That walk stays short because a scope takes at
 * most SCOPE_BLOCKS_MAX blocks (128 KiB: a request body of 1 KB takes one): what a big body needs
 * beyond them comes from malloc(), so a 32 MiB body costs a free() no more than a few compares.
 * When a scope is left with no live value, or its last value is freed after it was left, its
 * blocks go back to the spare list (at most SPARE_MAX kept) or to free().
 *
 * Under AddressSanitizer the unused part of a block, and every spare block, is poisoned, so a read
 * of a value after its scope was released is reported as such. */
#include <assert.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json-arena.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define BLOCK_SIZE (16u * 1024)
#define SMALL_MAX 1024u /* larger allocations go to malloc() */
#define ALIGN 16u
#define SPARE_MAX 4
#define SCOPE_BLOCKS_MAX 8

struct block {
    struct block *next;     /* the next older block of the same scope */
    struct block *all_next; /* every block owned by a scope, for free() */
    struct json_arena *arena;
    size_t used; /* bytes of data[] handed out */
    alignas(ALIGN) unsigned char data[];
};

#define BLOCK_DATA (BLOCK_SIZE - offsetof(struct block, data))

struct json_arena {
    struct block *blocks; /* newest first; the last one holds this record */
    struct json_arena *outer;
    size_t live;
    unsigned n_blocks;
    bool open;
};

#define ARENA_RECORD ((sizeof(struct json_arena) + ALIGN - 1) / ALIGN * ALIGN)

/* What jansson used before json_arena_install(): malloc() and free(), or ipc.c's wiping free. */
static json_malloc_t fallback_malloc = malloc;
static json_free_t fallback_free = free;
static bool wipe;

static _Thread_local struct json_arena *current;
static _Thread_local struct block *all_blocks;
static _Thread_local struct block *spare[SPARE_MAX];
static _Thread_local size_t n_spare, n_blocks, n_retained;

static struct block *block_get(struct json_arena *a)
{
    struct block *b;

    if (n_spare > 0) {
        b = spare[--n_spare];
        UNPOISON(b, offsetof(struct block, data));
    } else {
        b = malloc(BLOCK_SIZE);
        if (!b)
            return NULL;
        POISON(b->data, BLOCK_DATA);
    }
    b->arena = a;
    b->used = 0;
    b->all_next = all_blocks;
    all_blocks = b;
    n_blocks++;
    return b;
}

static void block_put(struct block *b)
{
    struct block **p;

    for (p = &all_blocks; *p; p = &(*p)->all_next)
        if (*p == b) {
            *p = b->all_next;
            break;
        }
    n_blocks--;
    if (wipe) {
        UNPOISON(b->data, b->used); /* the padding after each allocation is still poisoned */
        explicit_bzero(b->data, b->used);
    }
    if (n_spare < SPARE_MAX) {
        POISON(b, BLOCK_SIZE);
        spare[n_spare++] = b;
    } else
        free(b);
}

static void arena_release(struct json_arena *a)
{
    struct block *b = a->blocks, *next;

    /* The record lives in the oldest block: read everything from it before that block goes. */
    while (b) {
        next = b->next;
        block_put(b);
        b = next;
    }
}

static void *arena_malloc(size_t size)
{
    struct json_arena *a = current;
    struct block *b;
    size_t n = (size + ALIGN - 1) / ALIGN * ALIGN;
    void *p;

    if (!a || size > SMALL_MAX || n == 0)
        return fallback_malloc(size);
    b = a->blocks;
    if (b->used + n > BLOCK_DATA) {
        if (a->n_blocks >= SCOPE_BLOCKS_MAX)
            return fallback_malloc(size);
        b = block_get(a);
        if (!b)
            return fallback_malloc(size);
        b->next = a->blocks;
        a->blocks = b;
        a->n_blocks++;
    }
    p = b->data + b->used;
    b->used += n;
    a->live++;
    UNPOISON(p, size);
    return p;
}

static void arena_free(void *p)
{
    struct block *b;

    if (!p)
        return;
    for (b = all_blocks; b; b = b->all_next)
        if ((unsigned char *)p >= b->data && (unsigned char *)p < b->data + BLOCK_DATA) {
            struct json_arena *a = b->arena;

            if (--a->live == 0 && !a->open) {
                n_retained--;
                arena_release(a);
            }
            return;
        }
    fallback_free(p);
}

void json_arena_install(bool wipe_blocks)
{
    json_malloc_t m;
    json_free_t f;

    wipe = wipe_blocks;
    json_get_alloc_funcs(&m, &f);
    if (m == arena_malloc)
        return; /* installed already: keep the first fallbacks */
    fallback_malloc = m;
    fallback_free = f;
    json_set_alloc_funcs(arena_malloc, arena_free);
}

struct json_arena *json_arena_enter(void)
{
    struct json_arena *a;
    struct block *b;

    b = block_get(NULL);
    if (!b)
        return NULL;
    UNPOISON(b->data, ARENA_RECORD);
    a = (struct json_arena *)(void *)b->data;
    *a = (struct json_arena){.blocks = b, .outer = current, .n_blocks = 1, .open = true};
    b->arena = a;
    b->next = NULL;
    b->used = ARENA_RECORD;
    current = a;
    return a;
}

void json_arena_leave(struct json_arena *a)
{
    if (!a)
        return;
    /* Scopes end in the reverse order they began (they are lexical): the innermost first. */
    assert(a == current);
    current = a->outer;
    a->open = false;
    if (a->live == 0)
        arena_release(a);
    else
        n_retained++;
}

size_t json_arena_retained(void)
{
    return n_retained;
}

size_t json_arena_blocks(void)
{
    return n_blocks;
}
