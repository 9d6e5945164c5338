
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_IMAP_PARSE_H_INCLUDED_
#define _NGX_MAIL_PLUS_IMAP_PARSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The reader of an IMAP server's responses (RFC 3501, RFC 9051), for the
 * asynchronous IMAP client of the JMAP endpoint (ngx_mail_plus_imap_parse.c).
 *
 * The caller feeds the bytes as they arrive, buffer by buffer; a response
 * may be split anywhere (inside a tag, a number, a literal's size, a CRLF,
 * a quoted string's escape).  Each call reads from b->pos and returns:
 *
 *   NGX_OK     a response is complete: p->response; b->pos is just after
 *              its CRLF (the bytes that follow, if any, are the next
 *              responses: call again with the same buffer);
 *   NGX_AGAIN  the whole buffer was read (b->pos == b->last) and the
 *              response is not complete yet: call again with more bytes;
 *   NGX_ERROR  the bytes are not an IMAP response or exceed a limit:
 *              p->error names why (a static string, safe to log), b->pos
 *              is at the byte refused; the parser is done with (every
 *              later call returns NGX_ERROR): drop the connection.
 *
 * Nothing points into the caller's buffers after a call returns: what the
 * parser keeps is copied, to a scratch line of limits.line bytes taken
 * from the pool given at init (for the parser's life), and every value of
 * a response to p->pool (at init the same pool).  The caller may set
 * p->pool to another pool between responses (after NGX_OK, before the
 * next call), e.g. a pool per response destroyed once it is used; never
 * in the middle of one.
 *
 * What is read:
 *
 *   "+" [SP [resp-text]] CRLF                       continuation
 *   "*" SP status [SP ["[" code "]"] [SP] [text]] CRLF
 *   "*" SP [number SP] name [SP values] CRLF        untagged data
 *   tag SP ("OK" / "NO" / "BAD") [SP [code] text] CRLF
 *
 * where status is OK, NO, BAD, PREAUTH or BYE (any case).  A data name is
 * an atom ("CAPABILITY", "LIST", "FETCH", "EXISTS", "ESEARCH"...), kept as
 * sent; the number before it ("* 23 EXISTS", "* 5 FETCH (...)") is in
 * response->number.  The values of data, and a response code's words
 * ("[UIDVALIDITY 3857529045]", "[PERMANENTFLAGS (\Seen \*)]"), are a tree:
 *
 *   atom     1*<any CHAR but SP, CTL, "(", ")", "{", DQUOTE, "]">, with
 *            "\" allowed (flags: \Seen, \*); an atom may hold bracket
 *            parts "[...]" in which SP, parentheses and DQUOTE are
 *            allowed (FETCH items: BODY[1.2.MIME]<0>, BINARY[1],
 *            BODY[HEADER.FIELDS (FROM TO)]), kept whole in the atom;
 *            "NIL" (any case) is NIL;
 *   number   an atom of digits only, as uint64_t: one that does not fit
 *            is an error (its text is kept in str as well);
 *   string   DQUOTE ... DQUOTE, with \" and \\ as escapes (any other
 *            escape is an error); CR, LF and NUL are refused; 8-bit bytes
 *            are kept as sent (UTF-8 under UTF8=ACCEPT, not checked here:
 *            the consumer checks UTF-8 where it needs it, e.g. for JSON);
 *   literal  "{" n ["+"] "}" CRLF and n bytes, or RFC 3516's literal8
 *            "~{" n ["+"] "}" CRLF (binary set): any bytes, NUL included;
 *   list     "(" values ")", items separated by SP; a missing or doubled
 *            SP between items is taken as one (Dovecot writes no SP
 *            between the parts of a multipart BODYSTRUCTURE).
 *
 * Atoms (and tags, names, numbers) are 7-bit: an 8-bit byte or a control
 * character in one is an error.  The free text after a status or a code
 * (resp-text) is kept as sent, except that NUL, a CR not followed by LF
 * and a bare LF are errors; 8-bit bytes pass.
 *
 * Limits (all given by the caller, all enforced as bytes arrive, none
 * optional; an excess is an error): line, the bytes of a line outside
 * literals (counted again after each literal's body; a tag, atom, quoted
 * string or text is never longer); literal, the size of one literal;
 * depth, the nesting of lists (a code's or data's own values are depth
 * 0, "(" makes 1); items, the items of one list (a data's values and a
 * code's words count as one list); total, the bytes of one response,
 * literals included.  The memory a response takes in p->pool is bounded by
 * its size: a value (sizeof(ngx_mail_plus_imap_value_t) and a pointer) per
 * token, the copies of its strings.
 *
 * A log (p->log, may be NULL) gets debug lines "imap parse: ...".
 */


typedef enum {
    NGX_MAIL_PLUS_IMAP_ATOM = 0,
    NGX_MAIL_PLUS_IMAP_NUMBER,
    NGX_MAIL_PLUS_IMAP_STRING,        /* a quoted string */
    NGX_MAIL_PLUS_IMAP_LITERAL,
    NGX_MAIL_PLUS_IMAP_NIL,
    NGX_MAIL_PLUS_IMAP_LIST
} ngx_mail_plus_imap_type_e;


typedef struct ngx_mail_plus_imap_value_s  ngx_mail_plus_imap_value_t;

struct ngx_mail_plus_imap_value_s {
    ngx_mail_plus_imap_type_e     type;
    ngx_str_t                     str;     /* atom, number, string,
                                              literal: the bytes (copied,
                                              data NULL if len is 0);
                                              NIL: "NIL" as sent */
    uint64_t                      number;  /* NUMBER */
    ngx_uint_t                    nelts;   /* LIST: its items */
    ngx_mail_plus_imap_value_t  **items;
    unsigned                      binary:1;  /* LITERAL: a literal8 */

    /* the parser's, while the list is read (NULL after) */
    ngx_mail_plus_imap_value_t   *parent;
    ngx_mail_plus_imap_value_t   *last;
    ngx_mail_plus_imap_value_t   *next;
};


typedef enum {
    NGX_MAIL_PLUS_IMAP_UNTAGGED = 0,  /* "*" */
    NGX_MAIL_PLUS_IMAP_CONTINUATION,  /* "+" */
    NGX_MAIL_PLUS_IMAP_TAGGED
} ngx_mail_plus_imap_kind_e;


typedef enum {
    NGX_MAIL_PLUS_IMAP_DATA = 0,      /* untagged data: name, values */
    NGX_MAIL_PLUS_IMAP_OK,
    NGX_MAIL_PLUS_IMAP_NO,
    NGX_MAIL_PLUS_IMAP_BAD,
    NGX_MAIL_PLUS_IMAP_PREAUTH,
    NGX_MAIL_PLUS_IMAP_BYE
} ngx_mail_plus_imap_status_e;


typedef struct {
    ngx_mail_plus_imap_kind_e     kind;
    ngx_mail_plus_imap_status_e   status;  /* DATA for "+" too */
    ngx_str_t                     tag;     /* TAGGED */
    ngx_str_t                     name;    /* DATA: "FETCH", as sent */
    uint64_t                      number;  /* DATA: "* 5 FETCH" */
    unsigned                      has_number:1;

    /* status and "+": the code's words as a list (the first an atom: its
       name), or NULL; and the text after it (or all of "+"'s line) */
    ngx_mail_plus_imap_value_t   *code;
    ngx_str_t                     text;

    ngx_mail_plus_imap_value_t   *data;    /* DATA: its values as a list
                                              (never NULL, maybe empty) */
    size_t                        size;    /* the bytes it took */
} ngx_mail_plus_imap_response_t;


typedef struct {
    size_t                        line;
    size_t                        literal;
    ngx_uint_t                    depth;
    ngx_uint_t                    items;
    size_t                        total;
} ngx_mail_plus_imap_limits_t;


typedef struct {
    ngx_mail_plus_imap_response_t  *response;  /* after NGX_OK */
    const char                     *error;     /* after NGX_ERROR */
    ngx_pool_t                     *pool;      /* for the values */
    ngx_log_t                      *log;       /* debug, or NULL */

    /* the parser's own */
    ngx_mail_plus_imap_limits_t     limits;
    ngx_uint_t                      state;
    ngx_uint_t                      next;      /* where a token goes */
    u_char                         *token;     /* the scratch line */
    size_t                          token_len;
    size_t                          line_len;
    size_t                          total;
    size_t                          literal_len;
    ngx_uint_t                      depth;
    ngx_uint_t                      binary;
    ngx_mail_plus_imap_value_t     *list;      /* the list being read */
    ngx_mail_plus_imap_value_t     *literal;   /* the literal being read */
} ngx_mail_plus_imap_parser_t;


ngx_int_t ngx_mail_plus_imap_parser_init(ngx_mail_plus_imap_parser_t *p,
    ngx_mail_plus_imap_limits_t *limits, ngx_pool_t *pool);
ngx_int_t ngx_mail_plus_imap_parse(ngx_mail_plus_imap_parser_t *p,
    ngx_buf_t *b);

/*
 * Walking values: each accessor takes NULL or a value of any type and
 * answers NULL, 0 or NGX_ERROR when the value is not what is asked.
 */

/* the i-th item of a list, or NULL */
ngx_mail_plus_imap_value_t *ngx_mail_plus_imap_item(
    ngx_mail_plus_imap_value_t *v, ngx_uint_t i);

/* 1 if v is an atom equal to s, ASCII case-insensitively (n = strlen) */
ngx_uint_t ngx_mail_plus_imap_atom_is(ngx_mail_plus_imap_value_t *v,
    char *s, size_t n);

/* a number: NGX_OK and *n, or NGX_ERROR */
ngx_int_t ngx_mail_plus_imap_number(ngx_mail_plus_imap_value_t *v,
    uint64_t *n);

/* an astring or nstring's bytes: string, literal or atom (also a number,
   as its digits); NIL and lists give NGX_DECLINED, NULL NGX_ERROR */
ngx_int_t ngx_mail_plus_imap_string(ngx_mail_plus_imap_value_t *v,
    ngx_str_t *s);

/*
 * a set of UIDs as a server sends it ("1:3,7", in COPYUID or VANISHED:
 * numbers of 32 bits, no "*"), read a range at a time: the range from p
 * (first <= last) and where the next begins (last at the end), or NULL
 * for anything else
 */

typedef struct {
    uint64_t                      first;
    uint64_t                      last;
} ngx_mail_plus_imap_range_t;

u_char *ngx_mail_plus_imap_uid_range(u_char *p, u_char *last,
    ngx_mail_plus_imap_range_t *r);


/* a FETCH response's message: NGX_OK with the bytes of its body section
   (an item named BODY[...] or BINARY[...]) if it is the message uid's,
   NGX_DECLINED for another response, message or no such item */
ngx_int_t ngx_mail_plus_imap_fetch_body(ngx_mail_plus_imap_response_t *resp,
    uint64_t uid, ngx_str_t *body);


#endif /* _NGX_MAIL_PLUS_IMAP_PARSE_H_INCLUDED_ */
