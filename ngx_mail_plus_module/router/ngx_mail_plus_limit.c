
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_router.h"


/*
 * Concurrent sessions per key ("u:login" for a user, "c:address" for a
 * client address).
 *
 * With a router zone the counts are in shared memory, one count for all
 * workers; without one they are kept per worker process, so that a limit
 * of N allows up to N sessions per worker.  acquire() takes one unit and
 * answers NGX_BUSY when the key already has "limit" sessions, NGX_DONE
 * when the session may go on but was not counted (the zone is full: a
 * full zone never refuses a session), NGX_OK when it was counted; only
 * then does the session call release() at its end.  A count that drops to
 * zero frees its node.
 *
 * A worker that crashes leaves its sessions counted in the zone, as with
 * nginx's limit_conn: the counts come right when the zone is recreated.
 *
 * Per-worker nodes outlive any session or configuration pool, so they are
 * allocated with ngx_alloc() and freed with ngx_free(); those of sessions
 * still open when the worker's cycle ends (a fast shutdown does not close
 * sessions) are freed by a cleanup of the cycle's pool, while the module
 * is still loaded.
 */


typedef struct {
    ngx_str_node_t              sn;
    ngx_uint_t                  count;
} ngx_mail_plus_limit_node_t;


static ngx_int_t ngx_mail_plus_limit_acquire_shared(ngx_mail_plus_zone_t *zone,
    ngx_str_t *key, ngx_uint_t limit, ngx_log_t *log);
static void ngx_mail_plus_limit_release_shared(ngx_mail_plus_zone_t *zone,
    ngx_str_t *key);
static ngx_mail_plus_zone_t *ngx_mail_plus_limit_zone(void);
static void ngx_mail_plus_limit_cleanup(void *data);


static ngx_rbtree_t             ngx_mail_plus_limit_tree;
static ngx_rbtree_node_t        ngx_mail_plus_limit_sentinel;
static ngx_uint_t               ngx_mail_plus_limit_inited;


ngx_int_t
ngx_mail_plus_limit_acquire(ngx_str_t *key, ngx_uint_t limit, ngx_log_t *log)
{
    uint32_t                     hash;
    ngx_pool_cleanup_t          *cln;
    ngx_mail_plus_zone_t        *zone;
    ngx_mail_plus_limit_node_t  *node;

    zone = ngx_mail_plus_limit_zone();

    if (zone) {
        return ngx_mail_plus_limit_acquire_shared(zone, key, limit, log);
    }

    if (!ngx_mail_plus_limit_inited) {
        cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_mail_plus_limit_cleanup;

        ngx_rbtree_init(&ngx_mail_plus_limit_tree,
                        &ngx_mail_plus_limit_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_mail_plus_limit_inited = 1;

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: session limits counted per worker");
    }

    hash = ngx_crc32_short(key->data, key->len);

    node = (ngx_mail_plus_limit_node_t *)
               ngx_str_rbtree_lookup(&ngx_mail_plus_limit_tree, key, hash);

    if (node) {
        if (node->count >= limit) {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                           "router: session limit %ui reached", limit);
            return NGX_BUSY;
        }

        node->count++;

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: session limit taken, %ui of %ui",
                       node->count, limit);
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

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: session limit taken, 1 of %ui", limit);

    return NGX_OK;
}


void
ngx_mail_plus_limit_release(ngx_str_t *key)
{
    ngx_mail_plus_zone_t        *zone;
    ngx_mail_plus_limit_node_t  *node;

    zone = ngx_mail_plus_limit_zone();

    if (zone) {
        ngx_mail_plus_limit_release_shared(zone, key);
        return;
    }

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


static void
ngx_mail_plus_limit_cleanup(void *data)
{
    ngx_rbtree_node_t  *node;

    if (!ngx_mail_plus_limit_inited) {
        return;
    }

    while (ngx_mail_plus_limit_tree.root != &ngx_mail_plus_limit_sentinel) {
        node = ngx_mail_plus_limit_tree.root;
        ngx_rbtree_delete(&ngx_mail_plus_limit_tree, node);

        /* the tree node starts the allocation */

        ngx_free(node);
    }

    ngx_mail_plus_limit_inited = 0;
}


static ngx_mail_plus_zone_t *
ngx_mail_plus_limit_zone(void)
{
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    if (mpcf == NULL || mpcf->shm_zone == NULL) {
        return NULL;
    }

    return mpcf->shm_zone->data;
}


static ngx_int_t
ngx_mail_plus_limit_acquire_shared(ngx_mail_plus_zone_t *zone, ngx_str_t *key,
    ngx_uint_t limit, ngx_log_t *log)
{
    size_t                       size;
    uint32_t                     hash;
    ngx_mail_plus_limit_node_t  *node;

    if (limit == 0) {
        return NGX_BUSY;
    }

    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = (ngx_mail_plus_limit_node_t *)
               ngx_str_rbtree_lookup(&zone->sh->limits, key, hash);

    if (node) {
        if (node->count >= limit) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                           "router: session limit %ui reached", limit);
            return NGX_BUSY;
        }

        node->count++;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: session limit taken, of %ui", limit);
        return NGX_OK;
    }

    size = sizeof(ngx_mail_plus_limit_node_t) + key->len;

    node = ngx_slab_alloc_locked(zone->shpool, size);

    if (node == NULL) {

        /* sessions come before throttling entries */

        (void) ngx_mail_plus_throttle_expire(zone, 16, 1);

        node = ngx_slab_alloc_locked(zone->shpool, size);

        if (node == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mail router zone \"%V\" is full, "
                          "a session is not counted",
                          &zone->mpcf->shm_zone->shm.name);
            return NGX_DONE;
        }
    }

    node->sn.str.len = key->len;
    node->sn.str.data = (u_char *) node + sizeof(ngx_mail_plus_limit_node_t);
    ngx_memcpy(node->sn.str.data, key->data, key->len);
    node->sn.node.key = hash;
    node->count = 1;

    ngx_rbtree_insert(&zone->sh->limits, &node->sn.node);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: zone: session count added, 1 of %ui", limit);

    return NGX_OK;
}


static void
ngx_mail_plus_limit_release_shared(ngx_mail_plus_zone_t *zone, ngx_str_t *key)
{
    ngx_mail_plus_limit_node_t  *node;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = (ngx_mail_plus_limit_node_t *)
               ngx_str_rbtree_lookup(&zone->sh->limits, key,
                                     ngx_crc32_short(key->data, key->len));

    if (node && --node->count == 0) {
        ngx_rbtree_delete(&zone->sh->limits, &node->sn.node);
        ngx_slab_free_locked(zone->shpool, node);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
