
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_proxy.h"


/*
 * Concurrent sessions per key ("u:login" for a user, "c:address" for a
 * client address).
 *
 * Today the counts are kept per worker process, in a red-black tree of
 * this worker: a limit of N allows up to N sessions per worker.  The two
 * functions below are the whole interface the sessions use, so that the
 * counts can move onto the module's shared memory zone (one count for
 * all workers) without touching the callers: acquire() takes one unit
 * and answers NGX_BUSY when the key already has "limit" sessions,
 * release() gives it back.  A count that drops to zero frees its node.
 *
 * The nodes outlive any session or configuration pool, so they are
 * allocated with ngx_alloc() and freed with ngx_free().
 */


typedef struct {
    ngx_str_node_t              sn;
    ngx_uint_t                  count;
} ngx_mail_plus_limit_node_t;


static ngx_rbtree_t             ngx_mail_plus_limit_tree;
static ngx_rbtree_node_t        ngx_mail_plus_limit_sentinel;
static ngx_uint_t               ngx_mail_plus_limit_inited;


ngx_int_t
ngx_mail_plus_limit_acquire(ngx_str_t *key, ngx_uint_t limit, ngx_log_t *log)
{
    uint32_t                     hash;
    ngx_mail_plus_limit_node_t  *node;

    if (!ngx_mail_plus_limit_inited) {
        ngx_rbtree_init(&ngx_mail_plus_limit_tree,
                        &ngx_mail_plus_limit_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_mail_plus_limit_inited = 1;
    }

    hash = ngx_crc32_short(key->data, key->len);

    node = (ngx_mail_plus_limit_node_t *)
               ngx_str_rbtree_lookup(&ngx_mail_plus_limit_tree, key, hash);

    if (node) {
        if (node->count >= limit) {
            return NGX_BUSY;
        }

        node->count++;
        return NGX_OK;
    }

    if (limit == 0) {
        return NGX_BUSY;
    }

    node = ngx_alloc(sizeof(ngx_mail_plus_limit_node_t) + key->len, log);
    if (node == NULL) {
        return NGX_ERROR;
    }

    node->sn.str.len = key->len;
    node->sn.str.data = (u_char *) node + sizeof(ngx_mail_plus_limit_node_t);
    ngx_memcpy(node->sn.str.data, key->data, key->len);
    node->sn.node.key = hash;
    node->count = 1;

    ngx_rbtree_insert(&ngx_mail_plus_limit_tree, &node->sn.node);

    return NGX_OK;
}


void
ngx_mail_plus_limit_release(ngx_str_t *key)
{
    ngx_mail_plus_limit_node_t  *node;

    if (!ngx_mail_plus_limit_inited) {
        return;
    }

    node = (ngx_mail_plus_limit_node_t *)
               ngx_str_rbtree_lookup(&ngx_mail_plus_limit_tree, key,
                                     ngx_crc32_short(key->data, key->len));
    if (node == NULL) {
        return;
    }

    if (--node->count == 0) {
        ngx_rbtree_delete(&ngx_mail_plus_limit_tree, &node->sn.node);
        ngx_free(node);
    }
}
