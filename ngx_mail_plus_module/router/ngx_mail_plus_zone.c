
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include <openssl/rand.h>
#include "ngx_mail_plus_router.h"


/*
 * The shared zone holds what all workers must agree on: the health of
 * every backend address and port, the throttling entries, the session
 * counts, the recipients' answers (ngx_mail_plus_smtp_verify.c), the
 * counters.
 * Health entries are found again by name when the configuration is
 * reloaded, so a server that is down stays down across a reload; they are
 * few and never freed.  Throttling entries come and go (see
 * ngx_mail_plus_throttle.c).
 */


typedef struct {
    ngx_queue_t                 queue;
    ngx_mail_plus_health_t      health;
} ngx_mail_plus_health_link_t;


static ngx_int_t ngx_mail_plus_zone_init(ngx_shm_zone_t *shm_zone, void *data);
static ngx_mail_plus_health_t *ngx_mail_plus_zone_health(
    ngx_mail_plus_zone_t *zone, ngx_mail_plus_server_t *server,
    ngx_uint_t protocol);


char *
ngx_mail_plus_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    u_char                *p;
    ssize_t                size;
    ngx_str_t             *value, name, s;
    ngx_mail_plus_zone_t  *zone;

    if (mpcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", it must be \"name:size\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->mpcf = mpcf;

    mpcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_mail_plus_module);
    if (mpcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (mpcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    mpcf->shm_zone->init = ngx_mail_plus_zone_init;
    mpcf->shm_zone->data = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_mail_plus_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_mail_plus_zone_t  *ozone = data;

    size_t                   len;
    ngx_uint_t               i, k, n;
    ngx_mail_plus_zone_t    *zone;
    ngx_mail_plus_pool_t   **pools;
    ngx_mail_plus_server_t  *servers;

    zone = shm_zone->data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "router: zone \"%V\" init, reused %d, exists %ui",
                   &shm_zone->shm.name, ozone != NULL,
                   (ngx_uint_t) shm_zone->shm.exists);

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;

    } else {
        zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        if (shm_zone->shm.exists) {
            zone->sh = zone->shpool->data;

        } else {
            zone->sh = ngx_slab_alloc(zone->shpool,
                                      sizeof(ngx_mail_plus_shctx_t));
            if (zone->sh == NULL) {
                return NGX_ERROR;
            }

            ngx_memzero(zone->sh, sizeof(ngx_mail_plus_shctx_t));

            zone->shpool->data = zone->sh;

            ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                            ngx_str_rbtree_insert_value);
            ngx_queue_init(&zone->sh->queue);
            ngx_queue_init(&zone->sh->health);
            ngx_rbtree_init(&zone->sh->limits, &zone->sh->limits_sentinel,
                            ngx_str_rbtree_insert_value);
            ngx_rbtree_init(&zone->sh->verify, &zone->sh->verify_sentinel,
                            ngx_str_rbtree_insert_value);
            ngx_queue_init(&zone->sh->verify_queue);
            ngx_rbtree_init(&zone->sh->dir_tree, &zone->sh->dir_sentinel,
                            ngx_mail_plus_dir_cache_insert);
            ngx_queue_init(&zone->sh->dir_queue);

            /* token introspection's answers (token/) */
            ngx_rbtree_init(&zone->sh->token_tree, &zone->sh->token_sentinel,
                            ngx_str_rbtree_insert_value);
            ngx_queue_init(&zone->sh->token_queue);

            if (RAND_bytes(zone->sh->dir_key, sizeof(zone->sh->dir_key))
                != 1)
            {
                ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                              "RAND_bytes() failed for mail router zone "
                              "\"%V\"", &shm_zone->shm.name);
                return NGX_ERROR;
            }

            len = sizeof(" in mail router zone \"\"") + shm_zone->shm.name.len;

            zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
            if (zone->shpool->log_ctx == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(zone->shpool->log_ctx, " in mail router zone \"%V\"%Z",
                        &shm_zone->shm.name);

            zone->shpool->log_nomem = 0;
        }
    }

    /* every server gets the health entry of each address and port it has */

    pools = zone->mpcf->pools.elts;

    for (i = 0; i < zone->mpcf->pools.nelts; i++) {
        servers = pools[i]->servers.elts;

        for (n = 0; n < pools[i]->servers.nelts; n++) {
            for (k = 0; k < NGX_MAIL_PLUS_NPROTOCOLS; k++) {

                if (servers[n].port[k] == 0) {
                    continue;
                }

                servers[n].health[k] = ngx_mail_plus_zone_health(zone,
                                                                  &servers[n],
                                                                  k);
                if (servers[n].health[k] == NULL) {
                    return NGX_ERROR;
                }
            }
        }
    }

    return NGX_OK;
}


static ngx_mail_plus_health_t *
ngx_mail_plus_zone_health(ngx_mail_plus_zone_t *zone,
    ngx_mail_plus_server_t *server, ngx_uint_t protocol)
{
    u_char                        name[NGX_SOCKADDR_STRLEN];
    ngx_queue_t                  *q;
    ngx_mail_plus_health_link_t  *link;

    /* the name of an entry is its address and port */

    *ngx_snprintf(name, NGX_SOCKADDR_STRLEN - 1, "%V:%ud", &server->host,
                  (ngx_uint_t) server->port[protocol]) = '\0';

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->health);
         q != ngx_queue_sentinel(&zone->sh->health);
         q = ngx_queue_next(q))
    {
        link = ngx_queue_data(q, ngx_mail_plus_health_link_t, queue);

        if (ngx_strcmp(link->health.name, name) == 0) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                           "router: zone: health of %s found, down %ui",
                           name, (ngx_uint_t) link->health.down);
            return &link->health;
        }
    }

    /* health comes first: throttling entries make room for it */

    for ( ;; ) {
        link = ngx_slab_calloc_locked(zone->shpool,
                                      sizeof(ngx_mail_plus_health_link_t));
        if (link) {
            break;
        }

        if (ngx_mail_plus_throttle_expire(zone, 64, 1) == NGX_DECLINED) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                          "mail router zone \"%V\" is too small for "
                          "the health of %s", &zone->mpcf->shm_zone->shm.name,
                          name);
            return NULL;
        }
    }

    ngx_memcpy(link->health.name, name, sizeof(name));

    ngx_queue_insert_tail(&zone->sh->health, &link->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "router: zone: health of %s added", name);

    return &link->health;
}


/*
 * the counters of the zone, for whoever counts an event; NULL without a
 * zone: counts of one worker are never presented as totals
 */

ngx_mail_plus_stats_t *
ngx_mail_plus_zone_stats(void)
{
    ngx_mail_plus_zone_t       *zone;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    if (mpcf == NULL || mpcf->shm_zone == NULL) {
        return NULL;
    }

    zone = mpcf->shm_zone->data;

    if (zone->sh == NULL) {
        return NULL;
    }

    return &zone->sh->stats;
}


ngx_uint_t
ngx_mail_plus_zone_throttle_entries(ngx_mail_plus_zone_t *zone)
{
    ngx_uint_t    n;
    ngx_queue_t  *q;

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue);
         q = ngx_queue_next(q))
    {
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}
