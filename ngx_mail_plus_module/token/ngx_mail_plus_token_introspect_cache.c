
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token_introspect.h"


/*
 * The introspection endpoint's answers in the shared zone, for all
 * workers: a tree by the token's SHA-256 (never the token), most recent
 * first in a queue from which the oldest go when the zone is full.  An
 * active token lives until its "exp" or the "cache=" cap, whichever comes
 * first, with its login; one refused lives "router_directory_invalid".
 */


typedef struct {
    ngx_str_node_t              sn;        /* key: the hash's first bytes,
                                              str: the hash */
    ngx_queue_t                 queue;
    time_t                      expires;
    u_char                      result;
    u_char                      len;       /* of the login */
    u_char                      hash[32];
    u_char                      login[1];
} ngx_mail_plus_introspect_node_t;


static ngx_mail_plus_zone_t *ngx_mail_plus_introspect_zone(
    ngx_mail_plus_introspect_t *ip);
static ngx_mail_plus_introspect_node_t *ngx_mail_plus_introspect_find(
    ngx_mail_plus_zone_t *zone, u_char *hash);
static void ngx_mail_plus_introspect_remove(ngx_mail_plus_zone_t *zone,
    ngx_mail_plus_introspect_node_t *node);
static void ngx_mail_plus_introspect_expire(ngx_mail_plus_zone_t *zone,
    time_t now);


static ngx_mail_plus_zone_t *
ngx_mail_plus_introspect_zone(ngx_mail_plus_introspect_t *ip)
{
    ngx_mail_plus_zone_t  *zone;

    if (ip->mpcf->shm_zone == NULL) {
        return NULL;
    }

    zone = ip->mpcf->shm_zone->data;

    return zone->sh ? zone : NULL;
}


static ngx_mail_plus_introspect_node_t *
ngx_mail_plus_introspect_find(ngx_mail_plus_zone_t *zone, u_char *hash)
{
    uint32_t         key;
    ngx_str_t        val;
    ngx_str_node_t  *sn;

    ngx_memcpy(&key, hash, sizeof(uint32_t));

    val.data = hash;
    val.len = 32;

    sn = ngx_str_rbtree_lookup(&zone->sh->token_tree, &val, key);

    if (sn == NULL) {
        return NULL;
    }

    return (ngx_mail_plus_introspect_node_t *) sn;
}


/* the cached answer: NGX_OK, or NGX_DECLINED */

ngx_int_t
ngx_mail_plus_introspect_cache_get(ngx_mail_plus_introspect_t *ip,
    u_char *hash, ngx_uint_t *result, ngx_str_t *login, time_t *expires,
    ngx_pool_t *pool)
{
    u_char                           *buf;
    time_t                            now;
    ngx_mail_plus_zone_t             *zone;
    ngx_mail_plus_introspect_node_t  *node;

    zone = ngx_mail_plus_introspect_zone(ip);

    if (zone == NULL) {
        return NGX_DECLINED;
    }

    buf = ngx_pnalloc(pool, 255);
    if (buf == NULL) {
        return NGX_DECLINED;
    }

    now = ngx_time();

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_mail_plus_introspect_find(zone, hash);

    if (node == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    if (node->expires <= now) {
        ngx_mail_plus_introspect_remove(zone, node);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&node->queue);
    ngx_queue_insert_head(&zone->sh->token_queue, &node->queue);

    *result = node->result;
    *expires = node->expires;

    ngx_memcpy(buf, node->login, node->len);
    login->data = buf;
    login->len = node->len;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/* an answer kept until "exp": the oldest go while the zone is full */

void
ngx_mail_plus_introspect_cache_put(ngx_mail_plus_introspect_t *ip,
    u_char *hash, ngx_uint_t result, ngx_str_t *login, time_t exp)
{
    size_t                            len, size;
    uint32_t                          key;
    ngx_queue_t                      *q;
    ngx_uint_t                        evicted;
    ngx_mail_plus_zone_t             *zone;
    ngx_mail_plus_introspect_node_t  *node;

    zone = ngx_mail_plus_introspect_zone(ip);

    if (zone == NULL || exp <= ngx_time()) {
        return;
    }

    len = login ? login->len : 0;
    size = offsetof(ngx_mail_plus_introspect_node_t, login) + len;
    evicted = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_mail_plus_introspect_find(zone, hash);

    if (node) {
        ngx_mail_plus_introspect_remove(zone, node);
    }

    ngx_mail_plus_introspect_expire(zone, ngx_time());

    for ( ;; ) {
        node = ngx_slab_alloc_locked(zone->shpool, size);

        if (node || ngx_queue_empty(&zone->sh->token_queue)) {
            break;
        }

        q = ngx_queue_last(&zone->sh->token_queue);
        ngx_mail_plus_introspect_remove(zone,
                   ngx_queue_data(q, ngx_mail_plus_introspect_node_t, queue));
        evicted++;
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                       "router: token introspection cache: zone full");
        return;
    }

    ngx_memcpy(&key, hash, sizeof(uint32_t));
    ngx_memcpy(node->hash, hash, 32);

    node->sn.node.key = key;
    node->sn.str.data = node->hash;
    node->sn.str.len = 32;
    node->expires = exp;
    node->result = (u_char) result;
    node->len = (u_char) len;

    if (len) {
        ngx_memcpy(node->login, login->data, len);
    }

    ngx_rbtree_insert(&zone->sh->token_tree, &node->sn.node);
    ngx_queue_insert_head(&zone->sh->token_queue, &node->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                   "router: token introspection cached %ui for %T s, "
                   "%ui evicted", result, exp - ngx_time(), evicted);
}


static void
ngx_mail_plus_introspect_remove(ngx_mail_plus_zone_t *zone,
    ngx_mail_plus_introspect_node_t *node)
{
    ngx_queue_remove(&node->queue);
    ngx_rbtree_delete(&zone->sh->token_tree, &node->sn.node);
    ngx_slab_free_locked(zone->shpool, node);
}


/* at most two expired answers go at a time, the oldest first */

static void
ngx_mail_plus_introspect_expire(ngx_mail_plus_zone_t *zone, time_t now)
{
    ngx_uint_t                        n;
    ngx_queue_t                      *q;
    ngx_mail_plus_introspect_node_t  *node;

    for (n = 0; n < 2; n++) {

        if (ngx_queue_empty(&zone->sh->token_queue)) {
            return;
        }

        q = ngx_queue_last(&zone->sh->token_queue);
        node = ngx_queue_data(q, ngx_mail_plus_introspect_node_t, queue);

        if (node->expires > now) {
            return;
        }

        ngx_mail_plus_introspect_remove(zone, node);
    }
}


/*
 * the endpoint's state, shared by the workers (a worker's own without a
 * zone, as under "nginx -t")
 */

ngx_atomic_t *
ngx_mail_plus_introspect_down(ngx_mail_plus_introspect_t *ip)
{
    ngx_mail_plus_zone_t  *zone;

    zone = ngx_mail_plus_introspect_zone(ip);

    return zone ? &zone->sh->token_down : &ip->down;
}
