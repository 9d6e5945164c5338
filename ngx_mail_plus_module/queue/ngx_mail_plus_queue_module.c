
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_queue.h"


/* the default spool, unless the build chose another (config) */

#ifndef NGX_MAIL_PLUS_SPOOL_PATH
#define NGX_MAIL_PLUS_SPOOL_PATH  "mail_spool"
#endif


/*
 * The queue's directives and the queue of a cycle.  The queue exists when
 * "queue_spool" is set (HTTP submission may use it without SMTP servers)
 * or when a server stores and forwards (ngx_mail_plus_queue_use()); it is
 * set up in the master at each start and reload, and its stock of empty
 * files is removed at the exit of each worker.
 */


typedef struct {
    ngx_str_t                   spool;
    ngx_str_t                   thread_pool;
    ngx_mail_plus_queue_t      *queue;      /* NULL: no server uses it */
} ngx_mail_plus_queue_main_conf_t;


static void *ngx_mail_plus_queue_create_main_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_queue_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_mail_plus_queue_init_module(ngx_cycle_t *cycle);
static void ngx_mail_plus_queue_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_mail_plus_queue_commands[] = {

    { ngx_string("queue_spool"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_queue_main_conf_t, spool),
      NULL },

    { ngx_string("queue_thread_pool"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_queue_main_conf_t, thread_pool),
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_queue_module_ctx = {
    NULL,                                  /* protocol */

    ngx_mail_plus_queue_create_main_conf,  /* create main configuration */
    ngx_mail_plus_queue_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_queue_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_queue_module_ctx,       /* module context */
    ngx_mail_plus_queue_commands,          /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_mail_plus_queue_init_module,       /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_mail_plus_queue_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_mail_plus_queue_create_main_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_queue_main_conf_t  *qmcf;

    qmcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_queue_main_conf_t));
    if (qmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qmcf->spool = { 0, NULL };
     *     qmcf->thread_pool = { 0, NULL };
     *     qmcf->queue = NULL;
     */

    return qmcf;
}


static char *
ngx_mail_plus_queue_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_mail_plus_queue_main_conf_t *qmcf = conf;

    if (qmcf->spool.len == 0) {
        ngx_str_set(&qmcf->spool, NGX_MAIL_PLUS_SPOOL_PATH);

    } else {

        /* set: the queue exists for HTTP submission without SMTP servers */

        qmcf->queue = ngx_mail_plus_queue_create(cf, &qmcf->spool,
                                                 &qmcf->thread_pool);
        if (qmcf->queue == NULL) {
            return NGX_CONF_ERROR;
        }
    }

#if !(NGX_THREADS)

    if (qmcf->thread_pool.len) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"queue_thread_pool\" needs nginx built with threads");
        return NGX_CONF_ERROR;
    }

#endif

    return NGX_CONF_OK;
}


/*
 * a server that stores and forwards needs the queue: it is made on the
 * first call; the main confs of this module are initialized before the
 * servers of the modules after it in "config" are merged
 */

ngx_mail_plus_queue_t *
ngx_mail_plus_queue_use(ngx_conf_t *cf)
{
    ngx_mail_plus_queue_main_conf_t  *qmcf;

    qmcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_queue_module);

    if (qmcf->queue == NULL) {
        qmcf->queue = ngx_mail_plus_queue_create(cf, &qmcf->spool,
                                                 &qmcf->thread_pool);
    }

    return qmcf->queue;
}


static ngx_int_t
ngx_mail_plus_queue_init_module(ngx_cycle_t *cycle)
{
    ngx_mail_plus_queue_t  *q;

    q = ngx_mail_plus_queue_get(cycle);

    if (q == NULL) {
        return NGX_OK;
    }

    return ngx_mail_plus_queue_init(cycle, q);
}


static void
ngx_mail_plus_queue_exit_process(ngx_cycle_t *cycle)
{
    ngx_mail_plus_queue_t  *q;

    q = ngx_mail_plus_queue_get(cycle);

    if (q) {
        ngx_mail_plus_queue_exit(q);
    }
}


ngx_mail_plus_queue_t *
ngx_mail_plus_queue_get(ngx_cycle_t *cycle)
{
    ngx_mail_plus_queue_main_conf_t  *qmcf;

    qmcf = ngx_mail_plus_cycle_get_main_conf(cycle,
                                             ngx_mail_plus_queue_module);
    if (qmcf == NULL) {
        return NULL;
    }

    return qmcf->queue;
}
