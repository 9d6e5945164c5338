
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_SMTP_H_INCLUDED_
#define _NGX_MAIL_PLUS_SMTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue.h"


/*
 * SMTP store-and-forward: the parser (ngx_mail_plus_smtp_parse.c, pure
 * functions over byte ranges, linked alone into the fuzz target), the
 * session (ngx_mail_plus_smtp_handler.c, its commands in
 * ngx_mail_plus_smtp_envelope.c, _data.c and _auth.c) and the directives
 * (ngx_mail_plus_smtp_module.c); messages go to the spool
 * (ngx_mail_plus_queue.h).
 */


/*
 * the SMTP parser (ngx_mail_plus_smtp_parse.c): for the session, for the
 * HTTP submission (paths and content), for the router's check of a local
 * part, and for the fuzz targets
 */


/* commands */

#define NGX_MAIL_PLUS_SMTP_UNKNOWN     0
#define NGX_MAIL_PLUS_SMTP_HELO        1
#define NGX_MAIL_PLUS_SMTP_EHLO        2
#define NGX_MAIL_PLUS_SMTP_MAIL        3
#define NGX_MAIL_PLUS_SMTP_RCPT        4
#define NGX_MAIL_PLUS_SMTP_DATA        5
#define NGX_MAIL_PLUS_SMTP_BDAT        6
#define NGX_MAIL_PLUS_SMTP_RSET        7
#define NGX_MAIL_PLUS_SMTP_NOOP        8
#define NGX_MAIL_PLUS_SMTP_QUIT        9
#define NGX_MAIL_PLUS_SMTP_VRFY        10
#define NGX_MAIL_PLUS_SMTP_EXPN        11
#define NGX_MAIL_PLUS_SMTP_HELP        12
#define NGX_MAIL_PLUS_SMTP_STARTTLS    13
#define NGX_MAIL_PLUS_SMTP_AUTH        14
#define NGX_MAIL_PLUS_SMTP_NOTIMPL     15   /* TURN, ETRN, ... */


/* longest path (RFC 5321 4.5.3.1.3) */

#define NGX_MAIL_PLUS_SMTP_MAX_PATH    256


/* results of the parser beyond NGX_OK, NGX_AGAIN, NGX_ERROR */

#define NGX_MAIL_PLUS_SMTP_TOO_LONG    NGX_DECLINED
#define NGX_MAIL_PLUS_SMTP_BAD_PARAM   NGX_DECLINED
#define NGX_MAIL_PLUS_SMTP_OUT_FULL    NGX_BUSY
#define NGX_MAIL_PLUS_SMTP_HEADERS     NGX_DONE


/* a MAIL FROM or RCPT TO argument */

typedef struct {
    ngx_str_t                   addr;       /* inside <>, may be empty */
    ngx_str_t                   domain;     /* after the last @ */
    off_t                       size;       /* SIZE=, -1 if none */
    ngx_uint_t                  body;       /* NGX_MAIL_PLUS_BODY_* */
    ngx_str_t                   param;      /* the unsupported one */
    ngx_str_t                   ret;        /* RFC 3461: FULL or HDRS */
    ngx_str_t                   envid;
    ngx_str_t                   notify;
    ngx_str_t                   orcpt;
    unsigned                    smtputf8:1;
    unsigned                    utf8:1;     /* non-ASCII in the address */
} ngx_mail_plus_smtp_path_t;


/* the state of the DATA or BDAT reader */

typedef struct {
    ngx_uint_t                  state;
    off_t                       size;       /* octets stored */
    u_char                      name[12];   /* of a header field */
    size_t                      name_len;

    unsigned                    bdat:1;     /* no dots, no terminator */
    unsigned                    real:1;     /* line began after CRLF */
    unsigned                    headers:1;  /* in the header section */
    unsigned                    collect:1;  /* collecting a field name */
    unsigned                    has_date:1;
    unsigned                    has_message_id:1;
    unsigned                    eight_bit:1;
    unsigned                    bare:1;     /* a bare CR or LF was seen */
} ngx_mail_plus_smtp_data_t;


typedef struct {
    ngx_mail_plus_queue_t      *queue;      /* NULL: no server uses it */
} ngx_mail_plus_smtp_main_conf_t;


/*
 * the configuration of an SMTP server, for the delivery too (which
 * domains are local); the recipient probe's is part of it
 */

typedef struct {
    ngx_msec_t                  timeout;    /* of each step */
    time_t                      valid;      /* an answer "exists" is kept */
    time_t                      invalid;    /* "does not exist" */
} ngx_mail_plus_verify_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_array_t                *local_domains;  /* ngx_str_t, lower case */
    ngx_array_t                *trusted;        /* ngx_cidr_t */
    off_t                       max_message_size;
    ngx_uint_t                  max_recipients;
    size_t                      max_line_length;
    ngx_uint_t                  max_errors;
    ngx_msec_t                  command_timeout;
    ngx_msec_t                  data_timeout;
    ngx_msec_t                  send_timeout;
    size_t                      data_min_rate;  /* bytes a second */
    ngx_flag_t                  auth_plaintext;
    ngx_uint_t                  client_sessions;
    ngx_flag_t                  verify_recipients;
    ngx_mail_plus_verify_conf_t  verify;
} ngx_mail_plus_smtp_srv_conf_t;


/* the parser: no allocations, no nginx runtime calls */

ngx_int_t ngx_mail_plus_smtp_read_line(ngx_buf_t *b, size_t max,
    ngx_str_t *line, ngx_uint_t *skip);
ngx_uint_t ngx_mail_plus_smtp_parse_command(ngx_str_t *line,
    ngx_str_t *arg);
ngx_int_t ngx_mail_plus_smtp_parse_path(ngx_str_t *arg, ngx_uint_t rcpt,
    ngx_mail_plus_smtp_path_t *path);
ngx_int_t ngx_mail_plus_smtp_parse_bdat(ngx_str_t *arg, off_t *size,
    ngx_uint_t *last);
ngx_int_t ngx_mail_plus_smtp_parse_auth(ngx_str_t *arg, ngx_str_t *mech,
    ngx_str_t *initial);
void ngx_mail_plus_smtp_data_init(ngx_mail_plus_smtp_data_t *d,
    ngx_uint_t bdat);
ngx_int_t ngx_mail_plus_smtp_read_data(ngx_mail_plus_smtp_data_t *d,
    u_char **pos, u_char *last, u_char **out, u_char *end);
u_char *ngx_mail_plus_smtp_data_finish(ngx_mail_plus_smtp_data_t *d,
    u_char *out);


/*
 * what the SMTP session and the HTTP submission share
 * (ngx_mail_plus_submission.c): the Received field, the fields an
 * authenticated submission gets, the DSN value of a recipient
 */

#define NGX_MAIL_PLUS_RECEIVED_LEN  256   /* beyond the names */
#define NGX_MAIL_PLUS_FIELDS_LEN    128   /* beyond the server name */

typedef struct {
    ngx_str_t                       helo;        /* may be empty */
    ngx_str_t                       addr;        /* of the client */
    ngx_str_t                       server_name;
    char                           *with;        /* "ESMTPSA", "HTTPA" */
    u_char                         *id;
    ngx_str_t                      *rcpt;        /* the only one, or NULL */
    unsigned                        ipv6:1;
} ngx_mail_plus_received_t;

u_char *ngx_mail_plus_received(u_char *p, ngx_mail_plus_received_t *rv);
u_char *ngx_mail_plus_submission_fields(u_char *p,
    ngx_mail_plus_smtp_data_t *d, u_char *id, ngx_str_t *server_name);
ngx_int_t ngx_mail_plus_dsn_value(ngx_pool_t *pool,
    ngx_mail_plus_smtp_path_t *path, ngx_str_t *dsn);

/*
 * a submitted message written into the queue as it arrives, as HTTP
 * submission and the JMAP endpoint's EmailSubmission/set write one: the
 * Received field, the message through the reader of BDAT (no dots, bare
 * CR and LF made CRLF), Message-ID and Date where it has none, writes of
 * NGX_MAIL_PLUS_SUBMISSION_WRITE_SIZE bytes; then the caller commits
 * s->msg (ngx_mail_plus_queue_commit()) and answers in its handler
 */

#define NGX_MAIL_PLUS_SUBMISSION_WRITE_SIZE  32768

typedef struct {
    ngx_mail_plus_queue_msg_t      *msg;
    ngx_mail_plus_smtp_data_t       data;
    off_t                           max_size;
    ngx_str_t                       server_name; /* of Message-ID */
    u_char                         *wbuf;
    u_char                         *wpos;
    u_char                         *wend;
} ngx_mail_plus_submission_t;

/* NGX_OK; NGX_DECLINED: the queue refused (ngx_errno); NGX_ERROR; the
   Received field's id is the message's */
ngx_int_t ngx_mail_plus_submission_open(ngx_mail_plus_submission_t *s,
    ngx_mail_plus_queue_t *q, ngx_mail_plus_queue_envelope_t *env,
    ngx_mail_plus_received_t *rv, ngx_pool_t *pool, ngx_log_t *log);
/* NGX_OK; NGX_DECLINED: over s->max_size; NGX_ERROR: s->msg->err */
ngx_int_t ngx_mail_plus_submission_write(ngx_mail_plus_submission_t *s,
    u_char *pos, u_char *last);
/* the last line ended, the rest written, the body type set: NGX_OK or
   NGX_ERROR (s->msg->err) */
ngx_int_t ngx_mail_plus_submission_end(ngx_mail_plus_submission_t *s);


/* the module, whose server configuration the delivery reads */

extern ngx_module_t  ngx_mail_plus_smtp_module;


#endif /* _NGX_MAIL_PLUS_SMTP_H_INCLUDED_ */
